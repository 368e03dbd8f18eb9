//! Media: a bounded table of UDP media flows, announced by SDP or recognised by shape.
//!
//! Contract: a flow is keyed by its unordered address pair. Capacity `limits.media_flows`, idle
//! timeout `limits.media_timeout_secs`; when full the least recently seen flow is evicted and
//! counted (`media_flows`). SDP endpoints (`expect`) tie flows to a call. Unannounced flows are
//! kept only when their packets look like RTP or are voice-shaped. A flow that is kept (announced,
//! RTP or voice-like) is reported once as `Event::MediaEnded` when idle or at `finish`;
//! `Event::MediaStarted` is pushed once it is voice-like in both directions. Packet time only.

use crate::config::{LimitsConfig, NetworkConfig};
use crate::model::{Counters, Datagram, Event, MediaFlowRecord, RtpStreamStats, Timestamp};
use crate::rtp::{self, StreamStats};
use crate::table::TimedTable;
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;

// ---------------------------------------------------------------------------------------------
// Shape thresholds.

/// Largest IP packet of a "small" voice datagram (G.711 at 50 ms is 440 bytes).
const VOICE_MAX_IP_LEN: f64 = 480.0;
/// Packet rate band of voice (20-50 ms packetisation, with slack).
const VOICE_MIN_PPS: f64 = 18.0;
const VOICE_MAX_PPS: f64 = 56.0;
/// Byte difference between consecutive packets that still counts as the same frame size.
const VOICE_SIZE_SLACK: u64 = 8;
/// Packets and seconds each way before a flow can be called voice-like.
const VOICE_MIN_PACKETS: u64 = 40;
const VOICE_MIN_SECS: f64 = 1.0;
/// Inter-packet gaps that count as paced voice (10-60 ms packetisation, with slack).
const VOICE_MIN_GAP_US: i64 = 8_000;
const VOICE_MAX_GAP_US: i64 = 80_000;
/// An unannounced flow that is neither RTP nor voice-like after this long stops being tracked.
const CANDIDATE_SECS: f64 = 10.0;
/// Sequence-continuous RTP packets needed before a flow counts as RTP.
const RTP_MIN_CONTINUOUS: u64 = 3;
/// Most SSRC streams kept per flow (both directions together).
const MAX_STREAMS_PER_FLOW: usize = 16;
/// Most clock-rate hints kept per expectation.
const MAX_RATE_HINTS: usize = 16;
/// Deadlines move only when they advance at least this much (saves index updates per packet;
/// idle expiry re-checks the real last-seen time).
const TOUCH_GRANULARITY_US: i64 = 1_000_000;

/// (payload type, clock rate) pairs from SDP rtpmaps.
type RateHints = Vec<(u8, u32)>;

/// Unordered address pair: lower address first. The flow table is probed on every media
/// packet: two IPv4 ends, the bulk of the keys, are held as one word each (address and port), so
/// the key is made, hashed and compared in a few word operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowKey(Ends);

/// The ends of a flow, lower first. Two IPv4 ends are always `V4` and any other pair is always
/// `Other`, so the derived equality is that of the addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ends {
    /// `address << 16 | port` of each end: ordered as the `SocketAddrV4`s are.
    V4(u64, u64),
    Other(SocketAddr, SocketAddr),
}

fn v4_word(a: &SocketAddrV4) -> u64 {
    (u64::from(u32::from(*a.ip())) << 16) | u64::from(a.port())
}

fn v4_end(w: u64) -> SocketAddr {
    // The word was made from a u32 address and a u16 port: both casts take back exactly those.
    SocketAddr::V4(SocketAddrV4::new(
        Ipv4Addr::from((w >> 16) as u32),
        (w & 0xffff) as u16,
    ))
}

impl Hash for FlowKey {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        // Equal keys have equal ends, hence equal words: consistent with the derived `Eq`.
        match &self.0 {
            Ends::V4(a, b) => h.write_u128((u128::from(*a) << 64) | u128::from(*b)),
            Ends::Other(a, b) => {
                let word = |x: &SocketAddr| match x {
                    SocketAddr::V4(v4) => (v4_word(v4), None),
                    SocketAddr::V6(v6) => (
                        (1u64 << 48) | u64::from(v6.port()),
                        Some(u128::from(*v6.ip())),
                    ),
                };
                let (a, a6) = word(a);
                let (b, b6) = word(b);
                h.write_u128((u128::from(a) << 64) | u128::from(b));
                if let Some(x) = a6 {
                    h.write_u128(x);
                }
                if let Some(x) = b6 {
                    h.write_u128(x);
                }
            }
        }
    }
}

/// Ordered as the (lower, higher) address pairs are (the order flows are reported in at the
/// end of input when they began at the same time).
impl Ord for FlowKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        match (&self.0, &other.0) {
            (Ends::V4(a, b), Ends::V4(c, d)) => (a, b).cmp(&(c, d)),
            _ => self.ends().cmp(&other.ends()),
        }
    }
}

impl PartialOrd for FlowKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl FlowKey {
    /// The pair `a`, `b` in either order.
    pub fn new(a: SocketAddr, b: SocketAddr) -> Self {
        Self::with_order(&a, &b).0
    }

    /// The pair `a`, `b`, and whether `a` is its lower end (`a <= b`).
    #[inline(always)]
    fn with_order(a: &SocketAddr, b: &SocketAddr) -> (Self, bool) {
        match (a, b) {
            (SocketAddr::V4(x), SocketAddr::V4(y)) => {
                let (x, y) = (v4_word(x), v4_word(y));
                (FlowKey(Ends::V4(x.min(y), x.max(y))), x <= y)
            }
            _ if a <= b => (FlowKey(Ends::Other(*a, *b)), true),
            _ => (FlowKey(Ends::Other(*b, *a)), false),
        }
    }

    /// The ends, lower first.
    pub fn ends(&self) -> (SocketAddr, SocketAddr) {
        match self.0 {
            Ends::V4(a, b) => (v4_end(a), v4_end(b)),
            Ends::Other(a, b) => (a, b),
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct DirStats {
    packets: u64,
    bytes: u64,
    first: Timestamp,
    last: Timestamp,
    /// Last RTP header seen this way: (ssrc, seq, timestamp).
    rtp_last: Option<(u32, u16, u32)>,
    /// Packets continuing the previous one's SSRC with seq + 1 and a small timestamp step.
    rtp_continuous: u64,
    /// Arrival of the previous packet, and how many gaps were voice-like (8-80 ms).
    prev: Timestamp,
    voice_gaps: u64,
    /// IP length of the previous packet, and how many packets kept within a few bytes of it.
    prev_len: u64,
    steady_sizes: u64,
    /// Index in `Flow::streams` of the stream this way's last RTP packet went to (`NO_STREAM`
    /// before one): the next packet nearly always continues it (checked before the search over
    /// all streams). Every packet one way has the same source and destination, so the stream
    /// is this packet's when its SSRC is.
    stream: usize,
}

/// `DirStats::stream` before the first RTP packet.
const NO_STREAM: usize = usize::MAX;

impl DirStats {
    fn add(&mut self, ts: Timestamp, ip_len: u64) {
        if self.packets == 0 {
            self.first = ts;
        } else {
            let gap = ts.micros().saturating_sub(self.prev.micros());
            if (VOICE_MIN_GAP_US..=VOICE_MAX_GAP_US).contains(&gap) {
                self.voice_gaps += 1;
            }
            if ip_len.abs_diff(self.prev_len) <= VOICE_SIZE_SLACK {
                self.steady_sizes += 1;
            }
        }
        self.prev = ts;
        self.prev_len = ip_len;
        self.packets += 1;
        self.bytes = self.bytes.saturating_add(ip_len);
        if ts > self.last {
            self.last = ts;
        }
    }
    fn pps(&self) -> f64 {
        let span = self.last.secs_since(self.first);
        if span <= 0.0 || self.packets < 2 {
            return 0.0;
        }
        (self.packets - 1) as f64 / span
    }
    fn voice_shaped(&self) -> bool {
        if self.packets < VOICE_MIN_PACKETS || self.last.secs_since(self.first) < VOICE_MIN_SECS {
            return false;
        }
        let pps = self.pps();
        let mean = self.bytes as f64 / self.packets as f64;
        // Packetised voice is paced: most gaps sit near the packet time. Request/response
        // bursts (SNMP walks, DNS) reach voice-like averages with gaps of a few ms.
        let paced = self.voice_gaps.saturating_mul(10) >= (self.packets - 1).saturating_mul(6);
        // Gateway codecs (G.711, G.729, G.723) are constant-rate: frame sizes hardly change.
        // Game state and variable-rate app audio wander over tens of bytes from packet to packet.
        let steady = self.steady_sizes.saturating_mul(10) >= (self.packets - 1).saturating_mul(7);
        (VOICE_MIN_PPS..=VOICE_MAX_PPS).contains(&pps)
            && mean <= VOICE_MAX_IP_LEN
            && paced
            && steady
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FlowState {
    /// Unannounced, under observation.
    Candidate,
    /// Announced, RTP or voice-like: reported when it ends.
    Kept,
    /// Unannounced and neither RTP nor voice-like: only its last-seen time is kept.
    Rejected,
}

#[derive(Debug)]
struct Flow {
    /// The end inside the home networks when there is one, else the lower address.
    local: SocketAddr,
    /// Whether `local` is the key's lower end: a packet goes out when its source is the
    /// lower end exactly when `local` is (no address compared per packet).
    local_is_lo: bool,
    remote: SocketAddr,
    line: Option<IpAddr>,
    call_id: Option<Arc<str>>,
    first: Timestamp,
    last: Timestamp,
    /// [from local, to local].
    dir: [DirStats; 2],
    streams: Vec<StreamStats>,
    rates: Vec<(u8, u32)>,
    state: FlowState,
    started: bool,
    voice_like: bool,
    /// `MediaTable::expect_gen` when this flow was last checked for reused ports (and, untied,
    /// for an announcement of its endpoints).
    checked_gen: u64,
}

impl Flow {
    fn rtp(&self) -> bool {
        let cont = self.dir[0].rtp_continuous + self.dir[1].rtp_continuous;
        let total = self.dir[0].packets + self.dir[1].packets;
        cont >= RTP_MIN_CONTINUOUS && cont.saturating_mul(4) >= total
    }

    fn record(&self) -> MediaFlowRecord {
        let packets = self.dir[0].packets + self.dir[1].packets;
        let bytes = self.dir[0].bytes.saturating_add(self.dir[1].bytes);
        // Streams of unannounced flows must have passed RFC 3550 probation (not noise).
        let streams = self
            .streams
            .iter()
            .filter(|s| self.call_id.is_some() || s.expected() > 0)
            .map(StreamStats::to_record)
            .collect();
        MediaFlowRecord {
            local: self.local,
            remote: self.remote,
            line: self.line,
            call_id: self.call_id.as_deref().map(str::to_string),
            first: self.first,
            last: self.last,
            packets_out: self.dir[0].packets,
            packets_in: self.dir[1].packets,
            bytes_out: self.dir[0].bytes,
            bytes_in: self.dir[1].bytes,
            mean_ip_len: if packets == 0 {
                0.0
            } else {
                bytes as f64 / packets as f64
            },
            rtp: self.rtp(),
            voice_like: self.voice_like,
            streams,
        }
    }
}

#[derive(Debug)]
struct Expectation {
    call_id: Arc<str>,
    rates: Vec<(u8, u32)>,
}

/// The media table's evictions by kind, and their running total: the calls stage re-reads the
/// kinds only when the total moves (not a BTreeMap walk per packet).
#[derive(Debug, Default)]
struct Evictions {
    kinds: Counters,
    total: u64,
}

impl Evictions {
    fn add(&mut self, kind: &str) {
        self.kinds.add(kind, 1);
        self.total += 1;
    }
}

/// Counts kept by the media table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct MediaStats {
    /// Flows created (announced or candidate).
    pub(crate) flows: u64,
    /// Flows reported with `MediaEnded`.
    pub(crate) reported: u64,
    /// Reported flows that were voice-like.
    pub(crate) voice_like: u64,
    /// UDP datagrams not tracked (first packet large and not RTP).
    pub(crate) ignored: u64,
    /// RTP streams and their packets in reported flows.
    pub rtp_streams: u64,
    pub rtp_packets: u64,
    /// RTCP datagrams seen in tracked flows.
    pub(crate) rtcp_packets: u64,
}

/// A media datagram with what `MediaTable::on_datagram` read from it.
struct MediaPacket<'a, 'b> {
    d: &'a Datagram<'b>,
    /// Whether the source is the flow key's lower end.
    src_is_lo: bool,
    ip_len: u64,
    rtcp: bool,
    header: Option<rtp::RtpHeader>,
}

/// Adds one packet to its flow `f` (whose deadline is `deadline`); returns the new deadline
/// when it is due to move (in steps, not on every packet: the order index is a BTreeMap).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn update_flow(
    f: &mut Flow,
    deadline: Timestamp,
    p: &MediaPacket<'_, '_>,
    gen: u64,
    timeout_us: i64,
    expected: &TimedTable<SocketAddr, Expectation>,
    stats: &mut MediaStats,
    evictions: &mut Evictions,
    events: &mut Vec<Event>,
) -> Option<Timestamp> {
    let d = p.d;
    let want = d.ts.micros().saturating_add(timeout_us);
    let touch = (want - deadline.micros() >= TOUCH_GRANULARITY_US).then_some(Timestamp(want));
    f.checked_gen = gen;
    if d.ts > f.last {
        f.last = d.ts;
    }
    if f.state == FlowState::Rejected {
        return touch;
    }
    let out = p.src_is_lo == f.local_is_lo;
    let di = if out { 0 } else { 1 };
    if let Some(ds) = f.dir.get_mut(di) {
        ds.add(d.ts, p.ip_len);
    }
    if p.rtcp {
        stats.rtcp_packets += 1;
    }
    let mut stream_overflow = false;
    if let Some(h) = &p.header {
        if let Some(ds) = f.dir.get_mut(di) {
            if let Some((ssrc, seq, ts)) = ds.rtp_last {
                let step = h.timestamp.wrapping_sub(ts);
                if h.ssrc == ssrc && h.seq == seq.wrapping_add(1) && step <= 48_000 {
                    ds.rtp_continuous += 1;
                }
            }
            ds.rtp_last = Some((h.ssrc, h.seq, h.timestamp));
        }
        // Streams are unique by (SSRC, source, destination): the hint, when it matches, is
        // the one the search would find.
        let is_it = |s: &StreamStats| s.ssrc == h.ssrc && s.src == d.src && s.dst == d.dst;
        let hint = f.dir.get(di).map_or(NO_STREAM, |ds| ds.stream);
        let pos = match f.streams.get(hint) {
            Some(s) if s.ssrc == h.ssrc => Some(hint),
            _ => f.streams.iter().position(is_it),
        };
        let idx = match pos {
            Some(i) => Some(i),
            None if f.streams.len() < MAX_STREAMS_PER_FLOW => {
                // A new SSRC often follows a re-INVITE: take the rtpmaps announced now.
                let current = expected
                    .get(&d.dst)
                    .or_else(|| expected.get(&d.src))
                    .filter(|e| f.call_id.as_ref() == Some(&e.call_id));
                if let Some(e) = current {
                    f.rates.clone_from(&e.rates);
                }
                let hint = f
                    .rates
                    .iter()
                    .find(|(pt, _)| *pt == h.payload_type)
                    .map(|&(_, r)| r);
                let rate = rtp::clock_rate(h.payload_type, hint);
                f.streams
                    .push(StreamStats::new(d.src, d.dst, h, d.ts, rate));
                Some(f.streams.len() - 1)
            }
            None => {
                stream_overflow = true;
                None
            }
        };
        if let Some(i) = idx {
            if let Some(ds) = f.dir.get_mut(di) {
                ds.stream = i;
            }
            if let Some(s) = f.streams.get_mut(i) {
                s.update(h, d.ts, d.payload.len());
            }
        }
    }

    if !f.voice_like && f.dir[0].voice_shaped() && f.dir[1].voice_shaped() {
        f.voice_like = true;
    }
    if f.state == FlowState::Candidate {
        if f.voice_like || f.rtp() {
            f.state = FlowState::Kept;
        } else if f.last.secs_since(f.first) >= CANDIDATE_SECS {
            f.state = FlowState::Rejected;
            f.streams = Vec::new();
        }
    }
    if f.voice_like && !f.started {
        f.started = true;
        events.push(Event::MediaStarted {
            local: f.local,
            remote: f.remote,
            line: f.line,
            call_id: f.call_id.as_deref().map(str::to_string),
            ts: d.ts,
        });
    }
    if stream_overflow {
        evictions.add("media_streams");
    }
    touch
}

/// The bounded table of UDP media flows and of SDP-announced endpoints.
pub(crate) struct MediaTable {
    /// Boxed: the table's spare capacity holds pointers, not flows (a media flood).
    flows: TimedTable<FlowKey, Box<Flow>>,
    expected: TimedTable<SocketAddr, Expectation>,
    /// Bumped whenever an expectation appears, changes call or goes: flows re-check for reused
    /// ports only after a change, not on every packet.
    expect_gen: u64,
    /// Flows tied to each call, for the call record's RTP figures.
    by_call: crate::model::FastMap<Arc<str>, Vec<FlowKey>>,
    network: NetworkConfig,
    timeout_us: i64,
    expect_timeout_us: i64,
    evictions: Evictions,
    stats: MediaStats,
}

impl MediaTable {
    pub fn new(network: &NetworkConfig, l: &LimitsConfig) -> Self {
        MediaTable {
            flows: TimedTable::new(l.media_flows),
            expected: TimedTable::new(l.media_flows),
            expect_gen: 0,
            by_call: crate::model::FastMap::default(),
            network: network.clone(),
            timeout_us: i64::from(l.media_timeout_secs.max(1)) * 1_000_000,
            // An announced endpoint lives as long as a call may (the tracker removes it at the
            // call's end); the capacity bounds it meanwhile.
            expect_timeout_us: i64::from(l.dialog_timeout_secs.max(l.dialog_setup_timeout_secs))
                * 1_000_000,
            evictions: Evictions::default(),
            stats: MediaStats::default(),
        }
    }

    pub fn stats(&self) -> &MediaStats {
        &self.stats
    }
    pub fn evictions(&self) -> &Counters {
        &self.evictions.kinds
    }
    /// Every eviction counted in `evictions`, all kinds together.
    pub(crate) fn evictions_total(&self) -> u64 {
        self.evictions.total
    }
    pub(crate) fn flow_count(&self) -> usize {
        self.flows.len()
    }
    pub(crate) fn expectation_count(&self) -> usize {
        self.expected.len()
    }

    /// SDP announced that `endpoint` receives the media of `call_id`.
    #[cfg(test)]
    pub(crate) fn expect(&mut self, endpoint: SocketAddr, call_id: &str, ts: Timestamp) {
        self.expect_with_rates(endpoint, call_id, &[], ts);
    }

    /// Like `expect`, with (payload type, clock rate) pairs from the SDP's rtpmaps.
    pub(crate) fn expect_with_rates(
        &mut self,
        endpoint: SocketAddr,
        call_id: &str,
        rates: &[(u8, u32)],
        ts: Timestamp,
    ) {
        if endpoint.port() == 0 || endpoint.ip().is_unspecified() {
            return;
        }
        let call_id: Arc<str> = match self.expected.get(&endpoint) {
            Some(e) if &*e.call_id == call_id => e.call_id.clone(),
            _ => {
                self.expect_gen += 1;
                Arc::from(call_id)
            }
        };
        let rates = rates.iter().copied().take(MAX_RATE_HINTS).collect();
        let deadline = ts.plus_secs(self.expect_timeout_us as f64 / 1e6);
        if self
            .expected
            .insert(endpoint, Expectation { call_id, rates }, deadline)
            .is_some()
        {
            self.evictions.add("media_expectations");
        }
    }

    /// Forgets `endpoint` if it is still announced for `call_id`.
    pub(crate) fn unexpect(&mut self, endpoint: SocketAddr, call_id: &str) {
        if self
            .expected
            .get(&endpoint)
            .is_some_and(|e| &*e.call_id == call_id)
        {
            self.expected.remove(&endpoint);
            self.expect_gen += 1;
        }
    }

    /// Current RTP figures of the live flows tied to `call_id`.
    pub(crate) fn streams_for(&self, call_id: &str) -> Vec<RtpStreamStats> {
        let mut out = Vec::new();
        if let Some(keys) = self.by_call.get(call_id) {
            for k in keys {
                if let Some(f) = self.flows.get(k) {
                    out.extend(f.streams.iter().map(StreamStats::to_record));
                }
            }
        }
        out
    }

    fn orient(&self, a: SocketAddr, b: SocketAddr) -> (SocketAddr, SocketAddr, Option<IpAddr>) {
        // Both directions of a flow must agree: the lower end goes first.
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        match self.network.line_end(lo.ip(), hi.ip()) {
            Some(e) if e.line == hi.ip() && e.line != lo.ip() => (hi, lo, Some(e.line)),
            Some(e) => (lo, hi, Some(e.line)),
            None => (lo, hi, None),
        }
    }

    fn lookup_expectation(&self, d: &Datagram<'_>) -> Option<(Arc<str>, RateHints)> {
        if self.expected.is_empty() {
            return None;
        }
        let e = self
            .expected
            .get(&d.dst)
            .or_else(|| self.expected.get(&d.src))?;
        Some((e.call_id.clone(), e.rates.clone()))
    }

    /// `Some(key)` when flow `key` belongs to a call but neither end is announced for that call
    /// any more while one end is announced for another.
    fn announced_elsewhere(&self, key: &FlowKey, d: &Datagram<'_>) -> Option<FlowKey> {
        if self.expected.is_empty() {
            return None;
        }
        let cur = self.flows.get(key)?.call_id.as_deref()?;
        let a = self.expected.get(&d.dst).map(|e| &*e.call_id);
        let b = self.expected.get(&d.src).map(|e| &*e.call_id);
        if a == Some(cur) || b == Some(cur) || (a.is_none() && b.is_none()) {
            return None;
        }
        Some(*key)
    }

    fn tie(&mut self, key: FlowKey, call_id: Arc<str>) {
        let keys = self.by_call.entry(call_id).or_default();
        // A call rarely has more than a few flows; beyond that the figures are partial.
        if keys.len() < MAX_STREAMS_PER_FLOW && !keys.contains(&key) {
            keys.push(key);
        }
    }

    fn untie(&mut self, key: &FlowKey, call_id: Option<&Arc<str>>) {
        if let Some(c) = call_id {
            if let Some(keys) = self.by_call.get_mut(c) {
                keys.retain(|k| k != key);
                if keys.is_empty() {
                    self.by_call.remove(c);
                }
            }
        }
    }

    /// Offers one UDP datagram that is not SIP. Returns whether a flow tracks it.
    pub(crate) fn on_datagram(&mut self, d: &Datagram<'_>, events: &mut Vec<Event>) -> bool {
        let (key, src_is_lo) = FlowKey::with_order(&d.src, &d.dst);
        let ip_len = if d.ip_len > 0 {
            u64::from(d.ip_len)
        } else {
            d.payload.len() as u64 + 28
        };
        let rtcp = rtp::is_rtcp(d.payload);
        let header = if rtcp {
            None
        } else {
            rtp::parse(d.payload).ok().filter(rtp::plausible)
        };
        let pkt = MediaPacket {
            d,
            src_is_lo,
            ip_len,
            rtcp,
            header,
        };

        // The common case in one probe of the flow table: a known flow, checked since the last
        // change of the announced endpoints (`expect_gen` moves whenever an endpoint is
        // announced anew, changes call or goes). Such a flow needs no re-check for reused ports,
        // and if it is not tied to a call, its endpoints were not announced when last checked
        // and still are not: no tie to look up either.
        let gen = self.expect_gen;
        let mut probe = None;
        if let Some((f, deadline)) = self.flows.get_mut_with_deadline(&key) {
            let untied = f.call_id.is_none() && f.state != FlowState::Rejected;
            let checked = f.checked_gen == gen;
            if checked {
                let touch = update_flow(
                    f,
                    deadline,
                    &pkt,
                    gen,
                    self.timeout_us,
                    &self.expected,
                    &mut self.stats,
                    &mut self.evictions,
                    events,
                );
                if let Some(t) = touch {
                    self.flows.set_deadline(&key, t);
                }
                return true;
            }
            probe = Some((untied, checked));
        }
        // By value: the packet's fields stay in registers on the path above.
        self.on_datagram_unchecked(key, pkt, probe, events)
    }

    /// `on_datagram` for a packet of no flow, or of a flow not checked since the announced
    /// endpoints last changed (`probe`: whether it is untied, whether it is checked).
    #[inline(never)]
    fn on_datagram_unchecked(
        &mut self,
        key: FlowKey,
        pkt: MediaPacket<'_, '_>,
        mut probe: Option<(bool, bool)>,
        events: &mut Vec<Event>,
    ) -> bool {
        let (d, header, ip_len, gen) = (pkt.d, pkt.header, pkt.ip_len, self.expect_gen);
        // Ports reused by the next call before the flow went idle: the old call's media ends
        // here and a new flow starts for the call that announced the endpoint now. Only a change
        // of the announced endpoints can bring that about, so a flow re-checks only after one.
        if probe.is_some_and(|(_, checked)| !checked) {
            if let Some(old) = self.announced_elsewhere(&key, d) {
                if let Some(f) = self.flows.remove(&key) {
                    self.close(old, *f, events);
                }
                probe = None;
            }
        }
        if probe.is_none() {
            let announced = self.lookup_expectation(d);
            if announced.is_none() && header.is_none() && ip_len as f64 > VOICE_MAX_IP_LEN {
                self.stats.ignored += 1;
                return false;
            }
            let (local, remote, line) = self.orient(d.src, d.dst);
            let (call_id, rates, state) = match announced {
                Some((c, r)) => (Some(c), r, FlowState::Kept),
                None => (None, Vec::new(), FlowState::Candidate),
            };
            let flow = Flow {
                local,
                local_is_lo: local <= remote,
                remote,
                line,
                call_id: call_id.clone(),
                first: d.ts,
                last: d.ts,
                dir: [DirStats {
                    stream: NO_STREAM,
                    ..DirStats::default()
                }; 2],
                streams: Vec::new(),
                rates,
                state,
                started: false,
                voice_like: false,
                checked_gen: self.expect_gen,
            };
            let deadline = Timestamp(d.ts.micros().saturating_add(self.timeout_us));
            if let Some((k, old)) = self.flows.insert(key, Box::new(flow), deadline) {
                self.evictions.add("media_flows");
                self.close(k, *old, events);
            }
            self.stats.flows += 1;
            if let Some(c) = call_id {
                self.tie(key, c);
            }
        }

        // Tie a live flow once its endpoint gets announced (SDP can follow early media). A flow
        // created just now has already been looked up.
        let needs_tie = probe.is_some_and(|(untied, _)| untied);
        if needs_tie {
            if let Some((c, rates)) = self.lookup_expectation(d) {
                if let Some(f) = self.flows.get_mut(&key) {
                    f.call_id = Some(c.clone());
                    f.rates = rates;
                    f.state = FlowState::Kept;
                    for s in &mut f.streams {
                        if let Some(&(_, r)) = f.rates.iter().find(|(pt, _)| *pt == s.payload_type)
                        {
                            s.set_clock_rate(r);
                        }
                    }
                }
                self.tie(key, c);
            }
        }

        let Some((f, deadline)) = self.flows.get_mut_with_deadline(&key) else {
            return false;
        };
        let touch = update_flow(
            f,
            deadline,
            &pkt,
            gen,
            self.timeout_us,
            &self.expected,
            &mut self.stats,
            &mut self.evictions,
            events,
        );
        if let Some(t) = touch {
            self.flows.set_deadline(&key, t);
        }
        true
    }

    fn close(&mut self, key: FlowKey, f: Flow, events: &mut Vec<Event>) {
        self.untie(&key, f.call_id.as_ref());
        if f.state != FlowState::Kept {
            return;
        }
        let rec = f.record();
        self.stats.reported += 1;
        if rec.voice_like {
            self.stats.voice_like += 1;
        }
        self.stats.rtp_streams += rec.streams.len() as u64;
        self.stats.rtp_packets += rec.streams.iter().map(|s| s.packets).sum::<u64>();
        events.push(Event::MediaEnded(Box::new(rec)));
    }

    /// Reports and removes flows idle for the media timeout at `now`; drops stale expectations.
    pub fn expire(&mut self, now: Timestamp, events: &mut Vec<Event>) {
        while let Some(key) = self.flows.first_due(now) {
            // The deadline may trail the last packet by up to the touch granularity.
            let real = self
                .flows
                .get(&key)
                .map(|f| f.last.micros().saturating_add(self.timeout_us));
            match real {
                Some(r) if r > now.micros() => self.flows.set_deadline(&key, Timestamp(r)),
                _ => {
                    if let Some(f) = self.flows.remove(&key) {
                        self.close(key, *f, events);
                    }
                }
            }
        }
        while let Some(ep) = self.expected.first_due(now) {
            self.expected.remove(&ep);
            self.expect_gen += 1;
        }
    }

    /// End of input: reports every open flow, in order of first packet.
    pub fn finish(&mut self, _now: Timestamp, events: &mut Vec<Event>) {
        let mut all = self.flows.drain_ordered();
        all.sort_by_key(|(k, f)| (f.first, *k));
        for (k, f) in all {
            self.close(k, *f, events);
        }
        self.expected.drain_ordered();
        self.by_call.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn rtp_pkt(pt: u8, seq: u16, ts: u32, ssrc: u32, payload: usize) -> Vec<u8> {
        let mut v = vec![0x80, pt];
        v.extend_from_slice(&seq.to_be_bytes());
        v.extend_from_slice(&ts.to_be_bytes());
        v.extend_from_slice(&ssrc.to_be_bytes());
        v.extend(std::iter::repeat_n(0x55u8, payload));
        v
    }

    fn dg<'a>(src: &str, dst: &str, us: i64, payload: &'a [u8]) -> Datagram<'a> {
        Datagram {
            ts: Timestamp(us),
            src: addr(src),
            dst: addr(dst),
            transport: crate::model::Transport::Udp,
            payload,
            ip_len: payload.len() as u32 + 28,
        }
    }

    const LINE: &str = "192.168.1.10:4000";
    const PEER: &str = "203.0.113.5:30000";

    /// Two-way G.729-shaped RTP for `secs` seconds at 50 pps.
    fn two_way_rtp(t: &mut MediaTable, start_us: i64, secs: i64, ev: &mut Vec<Event>) {
        for i in 0..(secs * 50) {
            let at = start_us + i * 20_000;
            let a = rtp_pkt(18, 1000 + i as u16, 160 * i as u32, 0xaaaa, 20);
            t.on_datagram(&dg(LINE, PEER, at, &a), ev);
            let b = rtp_pkt(18, 5000 + i as u16, 160 * i as u32, 0xbbbb, 20);
            t.on_datagram(&dg(PEER, LINE, at + 3_000, &b), ev);
        }
    }

    #[test]
    fn flow_keys_are_unordered_pairs_ordered_as_the_addresses() {
        let ends = [
            "10.0.0.1:5004",
            "10.0.0.1:5006",
            "10.0.0.2:1",
            "192.168.1.10:4000",
            "255.255.255.255:65535",
            "0.0.0.0:0",
            "[2001:db8::1]:5004",
            "[2001:db8::2]:5004",
            "[::ffff:10.0.0.1]:5004",
        ]
        .map(addr);
        for a in ends {
            for b in ends {
                let k = FlowKey::new(a, b);
                assert_eq!(k, FlowKey::new(b, a));
                assert_eq!(k.ends(), (a.min(b), a.max(b)));
                for c in ends {
                    for d in ends {
                        let j = FlowKey::new(c, d);
                        assert_eq!(k == j, k.ends() == j.ends());
                        assert_eq!(k.cmp(&j), k.ends().cmp(&j.ends()), "{a} {b} {c} {d}");
                    }
                }
            }
        }
    }

    #[test]
    fn announced_rtp_flow_is_reported_with_call_and_streams() {
        let mut t = MediaTable::new(&NetworkConfig::default(), &LimitsConfig::default());
        let mut ev = Vec::new();
        t.expect_with_rates(addr(PEER), "call-1", &[(18, 8000)], Timestamp(0));
        two_way_rtp(&mut t, 1_000_000, 3, &mut ev);
        // MediaStarted once both directions passed 40 packets over >= 1 s.
        let started: Vec<_> = ev
            .iter()
            .filter(|e| matches!(e, Event::MediaStarted { .. }))
            .collect();
        assert_eq!(started.len(), 1);
        match started[0] {
            Event::MediaStarted {
                local,
                line,
                call_id,
                ..
            } => {
                assert_eq!(*local, addr(LINE));
                assert_eq!(*line, Some(addr(LINE).ip()));
                assert_eq!(call_id.as_deref(), Some("call-1"));
            }
            _ => unreachable!(),
        }
        assert_eq!(t.streams_for("call-1").len(), 2);
        // Idle for 30 s after the last packet -> reported.
        t.expire(Timestamp(4_000_000 + 29_000_000), &mut ev);
        assert!(!ev.iter().any(|e| matches!(e, Event::MediaEnded(_))));
        t.expire(Timestamp(4_100_000 + 30_000_000), &mut ev);
        let ended: Vec<_> = ev
            .iter()
            .filter_map(|e| match e {
                Event::MediaEnded(r) => Some(r),
                _ => None,
            })
            .collect();
        assert_eq!(ended.len(), 1);
        let r = ended[0];
        assert_eq!(r.call_id.as_deref(), Some("call-1"));
        assert_eq!(r.packets_out, 150);
        assert_eq!(r.packets_in, 150);
        assert_eq!(r.bytes_out, 150 * 60);
        assert_eq!(r.mean_ip_len, 60.0);
        assert!(r.rtp && r.voice_like);
        assert_eq!(r.streams.len(), 2);
        let s = r.streams.iter().find(|s| s.ssrc == 0xaaaa).unwrap();
        assert_eq!(s.packets, 150);
        assert_eq!(s.lost, 0);
        assert_eq!(s.jitter_ms, 0.0);
        assert_eq!(s.src, addr(LINE));
        assert_eq!(t.flow_count(), 0);
        assert_eq!(t.stats().rtp_packets, 300);
        assert_eq!(t.stats().rtp_streams, 2);
    }

    #[test]
    fn reused_ports_split_flows_between_calls() {
        let mut t = MediaTable::new(&NetworkConfig::default(), &LimitsConfig::default());
        let mut ev = Vec::new();
        t.expect(addr(LINE), "call-1", Timestamp(0));
        t.expect(addr(PEER), "call-1", Timestamp(0));
        two_way_rtp(&mut t, 0, 2, &mut ev);
        // The next call reuses both ports at once; call 1's endpoints were released.
        t.unexpect(addr(LINE), "call-1");
        t.expect(addr(PEER), "call-2", Timestamp(2_100_000));
        // Call 2 only announced the peer so far; call 1 is not announced anywhere any more.
        two_way_rtp(&mut t, 2_200_000, 1, &mut ev);
        t.finish(Timestamp(10_000_000), &mut ev);
        let ended: Vec<_> = ev
            .iter()
            .filter_map(|e| match e {
                Event::MediaEnded(r) => Some(r),
                _ => None,
            })
            .collect();
        assert_eq!(ended.len(), 2);
        assert_eq!(ended[0].call_id.as_deref(), Some("call-1"));
        assert_eq!(ended[0].packets_out + ended[0].packets_in, 200);
        assert_eq!(ended[1].call_id.as_deref(), Some("call-2"));
        assert_eq!(ended[1].packets_out + ended[1].packets_in, 100);
        // While one end is still announced for the flow's call, nothing splits.
        let mut t = MediaTable::new(&NetworkConfig::default(), &LimitsConfig::default());
        let mut ev = Vec::new();
        t.expect(addr(LINE), "a", Timestamp(0));
        t.expect(addr(PEER), "b", Timestamp(0));
        two_way_rtp(&mut t, 0, 1, &mut ev);
        t.finish(Timestamp(5_000_000), &mut ev);
        assert_eq!(
            ev.iter()
                .filter(|e| matches!(e, Event::MediaEnded(_)))
                .count(),
            1
        );
    }

    #[test]
    fn new_ssrc_after_reinvite_uses_the_new_clock_rate() {
        // PCMU first, then a re-INVITE to opus/48000 on the same ports with a new SSRC.
        let mut t = MediaTable::new(&NetworkConfig::default(), &LimitsConfig::default());
        let mut ev = Vec::new();
        t.expect_with_rates(addr(PEER), "c", &[(0, 8000)], Timestamp(0));
        for i in 0..50u16 {
            let p = rtp_pkt(0, i, u32::from(i) * 160, 1, 160);
            t.on_datagram(&dg(LINE, PEER, i64::from(i) * 20_000, &p), &mut ev);
        }
        t.expect_with_rates(addr(PEER), "c", &[(96, 48000)], Timestamp(1_000_000));
        for i in 0..50u16 {
            // 20 ms at 48 kHz is 960 units; 2 ms of arrival noise every other packet.
            let at = 1_100_000 + i64::from(i) * 20_000 + if i % 2 == 1 { 2_000 } else { 0 };
            let p = rtp_pkt(96, 1000 + i, u32::from(i) * 960, 2, 60);
            t.on_datagram(&dg(LINE, PEER, at, &p), &mut ev);
        }
        let s = t.streams_for("c");
        let opus = s.iter().find(|s| s.ssrc == 2).unwrap();
        // |D| is 2 ms = 96 units on every packet; J approaches 96 units = 2 ms (never above).
        assert!(
            opus.jitter_ms > 1.8 && opus.jitter_ms <= 2.0,
            "{}",
            opus.jitter_ms
        );
    }

    #[test]
    fn voice_shaped_flow_without_rtp_header_is_kept() {
        // Scrambled payload: first byte 0x00 (version 0), 60-byte IP packets, 50 pps each way.
        let mut t = MediaTable::new(&NetworkConfig::default(), &LimitsConfig::default());
        let mut ev = Vec::new();
        let payload = [0u8; 32];
        for i in 0..150i64 {
            t.on_datagram(&dg(LINE, PEER, i * 20_000, &payload), &mut ev);
            t.on_datagram(&dg(PEER, LINE, i * 20_000 + 5_000, &payload), &mut ev);
        }
        assert!(ev.iter().any(|e| matches!(e, Event::MediaStarted { .. })));
        t.finish(Timestamp(10_000_000), &mut ev);
        let r = ev
            .iter()
            .find_map(|e| match e {
                Event::MediaEnded(r) => Some(r),
                _ => None,
            })
            .unwrap();
        assert!(r.voice_like);
        assert!(!r.rtp);
        assert!(r.streams.is_empty());
        assert_eq!(r.call_id, None);
        assert_eq!(r.mean_ip_len, 60.0);
    }

    #[test]
    fn non_voice_udp_is_not_reported() {
        let mut t = MediaTable::new(&NetworkConfig::default(), &LimitsConfig::default());
        let mut ev = Vec::new();
        // Large first packet, not RTP: not tracked at all.
        let big = [0u8; 1200];
        assert!(!t.on_datagram(&dg(LINE, PEER, 0, &big), &mut ev));
        assert_eq!(t.stats().ignored, 1);
        // Small packets at 5 pps for 20 s: candidate, then rejected, never reported.
        let small = [1u8; 40];
        for i in 0..100i64 {
            t.on_datagram(
                &dg("192.168.1.10:53000", "8.8.8.8:53", i * 200_000, &small),
                &mut ev,
            );
        }
        t.finish(Timestamp(30_000_000), &mut ev);
        assert!(ev.is_empty(), "{ev:?}");
        assert_eq!(t.stats().reported, 0);
    }

    #[test]
    fn request_response_bursts_are_not_voice_like() {
        // An SNMP-walk-like exchange: 100 small request/response pairs 5 ms apart, then a
        // quiet 2.5 s, three times: 300 packets each way in 6.5 s (46 pps on average, a voice
        // rate), but no gap is paced like voice.
        let mut t = MediaTable::new(&NetworkConfig::default(), &LimitsConfig::default());
        let mut ev = Vec::new();
        let (q, a) = ([0x30u8; 60], [0x30u8; 50]);
        for burst in 0..3i64 {
            for i in 0..100i64 {
                let at = burst * 3_000_000 + i * 5_000;
                t.on_datagram(
                    &dg("192.168.1.10:1161", "198.51.100.9:161", at, &q),
                    &mut ev,
                );
                t.on_datagram(
                    &dg("198.51.100.9:161", "192.168.1.10:1161", at + 2_000, &a),
                    &mut ev,
                );
            }
        }
        t.finish(Timestamp(20_000_000), &mut ev);
        assert!(ev.is_empty(), "{ev:?}");
    }

    #[test]
    fn game_like_flows_are_not_voice_like() {
        // Small UDP both ways at voice-like gaps, but sizes wander (state updates) or the
        // server ticks at 64 Hz: never voice-like.
        let mut t = MediaTable::new(&NetworkConfig::default(), &LimitsConfig::default());
        let mut ev = Vec::new();
        let mut x = 7u64;
        let mut len = |lo: u64, hi: u64| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (lo + (x >> 33) % (hi - lo + 1)) as usize
        };
        for i in 0..600i64 {
            let up = vec![0x41u8; len(60, 140)];
            let down = vec![0x41u8; len(100, 300)];
            let at = i * 33_333;
            t.on_datagram(
                &dg("192.168.1.10:40000", "198.51.100.200:30000", at, &up),
                &mut ev,
            );
            t.on_datagram(
                &dg(
                    "198.51.100.200:30000",
                    "192.168.1.10:40000",
                    at + 9_000,
                    &down,
                ),
                &mut ev,
            );
        }
        for i in 0..1200i64 {
            // Steady sizes, but 64 packets/s.
            let down = [0x41u8; 120];
            t.on_datagram(
                &dg(
                    "198.51.100.200:30001",
                    "192.168.1.10:40001",
                    i * 15_625,
                    &down,
                ),
                &mut ev,
            );
            t.on_datagram(
                &dg(
                    "192.168.1.10:40001",
                    "198.51.100.200:30001",
                    i * 15_625 + 3_000,
                    &down,
                ),
                &mut ev,
            );
        }
        t.finish(Timestamp(30_000_000), &mut ev);
        assert!(ev.is_empty(), "{ev:?}");
    }

    #[test]
    fn unannounced_rtp_one_way_is_rtp_not_voice_like() {
        let mut t = MediaTable::new(&NetworkConfig::default(), &LimitsConfig::default());
        let mut ev = Vec::new();
        for i in 0..100i64 {
            let p = rtp_pkt(0, i as u16, 160 * i as u32, 7, 160);
            t.on_datagram(&dg(PEER, LINE, i * 20_000, &p), &mut ev);
        }
        t.finish(Timestamp(3_000_000), &mut ev);
        assert_eq!(ev.len(), 1);
        let Event::MediaEnded(r) = &ev[0] else {
            panic!("{ev:?}")
        };
        assert!(r.rtp);
        assert!(!r.voice_like);
        assert_eq!(r.packets_in, 100);
        assert_eq!(r.packets_out, 0);
        assert_eq!(r.streams.len(), 1);
        assert_eq!(r.streams[0].packets, 100);
        assert_eq!(r.line, Some(addr(LINE).ip()));
    }

    #[test]
    fn full_table_evicts_least_recently_seen_and_counts() {
        let limits = LimitsConfig {
            media_flows: 2,
            ..LimitsConfig::default()
        };
        let mut t = MediaTable::new(&NetworkConfig::default(), &limits);
        let mut ev = Vec::new();
        let p = |seq: u16| rtp_pkt(8, seq, u32::from(seq) * 160, 1, 160);
        for seq in 0..5u16 {
            t.on_datagram(
                &dg("192.168.1.1:1000", PEER, i64::from(seq) * 20_000, &p(seq)),
                &mut ev,
            );
        }
        t.on_datagram(&dg("192.168.1.2:1000", PEER, 500_000, &p(0)), &mut ev);
        // Flow 1 was seen last at 80 ms, flow 2 at 500 ms: flow 1 goes when flow 3 arrives.
        t.on_datagram(&dg("192.168.1.3:1000", PEER, 900_000, &p(0)), &mut ev);
        assert_eq!(t.flow_count(), 2);
        assert_eq!(t.evictions().get("media_flows"), 1);
        // Flow 1 was RTP (continuous sequence), so it is reported on eviction.
        let Some(Event::MediaEnded(r)) = ev.first() else {
            panic!("{ev:?}")
        };
        assert_eq!(r.local, addr("192.168.1.1:1000"));
        assert_eq!(r.packets_out, 5);
    }

    #[test]
    fn directions_follow_the_local_end_when_it_is_the_higher_address() {
        // The line (192.168.1.10) is the key's higher end here; the same SSRC both ways is
        // still two streams, each with its own source.
        const LOW_PEER: &str = "8.8.4.4:30000";
        let mut t = MediaTable::new(&NetworkConfig::default(), &LimitsConfig::default());
        let mut ev = Vec::new();
        for i in 0..60u16 {
            let at = i64::from(i) * 20_000;
            let a = rtp_pkt(18, 100 + i, 160 * u32::from(i), 0x77, 20);
            t.on_datagram(&dg(LINE, LOW_PEER, at, &a), &mut ev);
            if i % 2 == 0 {
                let b = rtp_pkt(18, 900 + i / 2, 320 * u32::from(i / 2), 0x77, 20);
                t.on_datagram(&dg(LOW_PEER, LINE, at + 3_000, &b), &mut ev);
            }
        }
        t.finish(Timestamp(5_000_000), &mut ev);
        let Some(Event::MediaEnded(r)) = ev.last() else {
            panic!("{ev:?}")
        };
        assert_eq!((r.local, r.remote), (addr(LINE), addr(LOW_PEER)));
        assert_eq!((r.packets_out, r.packets_in), (60, 30));
        assert_eq!(r.streams.len(), 2);
        let from_line = r.streams.iter().find(|s| s.src == addr(LINE)).unwrap();
        let from_peer = r.streams.iter().find(|s| s.src == addr(LOW_PEER)).unwrap();
        assert_eq!((from_line.packets, from_peer.packets), (60, 30));
        assert_eq!((from_line.lost, from_peer.lost), (0, 0));
    }

    #[test]
    fn rtcp_is_counted_not_streamed_and_unexpect_unties() {
        let mut t = MediaTable::new(&NetworkConfig::default(), &LimitsConfig::default());
        let mut ev = Vec::new();
        t.expect(addr(PEER), "c", Timestamp(0));
        let rr = [0x80, 201, 0, 1, 0, 0, 0, 9];
        t.on_datagram(&dg(LINE, PEER, 1, &rr), &mut ev);
        assert_eq!(t.stats().rtcp_packets, 1);
        assert!(t.streams_for("c").is_empty());
        t.unexpect(addr(PEER), "other");
        assert_eq!(t.expectation_count(), 1);
        t.unexpect(addr(PEER), "c");
        assert_eq!(t.expectation_count(), 0);
        t.finish(Timestamp(2), &mut ev);
        let Some(Event::MediaEnded(r)) = ev.first() else {
            panic!("{ev:?}")
        };
        assert_eq!(r.call_id.as_deref(), Some("c"));
        assert!(r.streams.is_empty());
    }
}
