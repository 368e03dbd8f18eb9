//! The pre-alert ring: per line, its recent signalling and a sample of its media, so that a line
//! flagged now has the packets that led to the verdict, not only those after it.
//!
//! Contract: no I/O and no clock (packet time only). A packet belongs to the line the engine
//! gives it (`NetworkConfig::line_end` on the innermost IP header, as the engine's decoder saw
//! it, `Engine::innermost`, or as `decode::peek` finds it); frames of no line are not kept. Signalling (SIP over UDP/TCP/SCTP, and IP fragments, which are
//! large SIP messages) is always kept; media (other UDP) is kept for the first `media_first`
//! packets of each flow and then one in `media_every`. One ring holds at most `ring_packets`
//! packets and `ring_bytes` bytes (the oldest go first, counted); at most `lines` lines have a
//! ring (the line whose last packet is oldest goes first, counted). A line being recorded (its
//! alert is open) sends what it keeps to `take_recorded` instead of its ring.

use simboxd_core::config::NetworkConfig;
use simboxd_core::decode::{peek, Innermost};
use simboxd_core::model::{FastMap, LinkType, RawPacket, Timestamp};
use simboxd_core::table::TimedTable;
use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Arc;

/// Media flows whose packets are counted per line; further flows share one counter.
pub const FLOWS_PER_LINE: usize = 64;
/// Lines recorded at once by one worker (their alerts are open); more are refused (counted).
pub const MAX_RECORDING: usize = 100_000;
/// Bytes a kept packet costs beyond its data (bookkeeping), for the byte bound.
const PACKET_OVERHEAD: usize = 48;

/// Limits of one worker's rings.
#[derive(Clone, Debug, PartialEq)]
pub struct RingLimits {
    pub lines: usize,
    pub packets: usize,
    pub bytes: usize,
    pub media_first: u32,
    pub media_every: u32,
}

impl RingLimits {
    /// One worker's share of `[evidence]` (the line bound is split over the workers).
    pub fn from_config(cfg: &super::EvidenceConfig, workers: usize) -> Self {
        RingLimits {
            lines: cfg.ring_lines.div_ceil(workers.max(1)).max(1),
            packets: cfg.ring_packets,
            bytes: cfg.ring_bytes,
            media_first: cfg.media_first,
            media_every: cfg.media_every.max(1),
        }
    }
}

/// A packet copied out of a batch, as the writer needs it.
#[derive(Clone, Debug, PartialEq)]
pub struct KeptPacket {
    pub ts: Timestamp,
    pub link: LinkType,
    pub wire_len: u32,
    pub data: Box<[u8]>,
    /// Signalling (else sampled media).
    pub sip: bool,
    /// Taken from the ring when the alert opened (else seen while it was open).
    pub pre_alert: bool,
}

impl KeptPacket {
    fn cost(&self) -> usize {
        self.data.len() + PACKET_OVERHEAD
    }
}

/// What a frame is to the ring.
#[derive(Debug, PartialEq)]
enum Class {
    Signalling,
    Media(FlowKey),
    Ignored,
}

/// Both ends of a media flow, lower end first (both directions share it).
type FlowKey = ((IpAddr, u16), (IpAddr, u16));

fn classify(p: &Innermost) -> Class {
    // A non-first fragment: in SIP/RTP traffic that is a large SIP message (SDP-heavy INVITEs).
    if p.later_fragment {
        return Class::Signalling;
    }
    match p.proto {
        17 => {
            if p.sip {
                return Class::Signalling;
            }
            match p.ports {
                Some((sp, dp)) => {
                    let (a, b) = ((p.src, sp), (p.dst, dp));
                    Class::Media((a.min(b), a.max(b)))
                }
                None => Class::Ignored,
            }
        }
        6 => {
            let sip_port = p
                .ports
                .is_some_and(|(s, d)| [s, d].iter().any(|x| matches!(x, 5060 | 5061)));
            if sip_port || p.sip {
                Class::Signalling
            } else {
                Class::Ignored
            }
        }
        132 => Class::Signalling,
        _ => Class::Ignored,
    }
}

#[derive(Debug, Default)]
struct LineRing {
    packets: VecDeque<KeptPacket>,
    bytes: usize,
    /// Packets seen per media flow (bounded by `FLOWS_PER_LINE`), and of flows beyond it.
    flows: Vec<(FlowKey, u64)>,
    other_flows: u64,
}

/// Counters of one worker's rings.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RingCounters {
    /// Packets kept (in a ring or for a recording).
    pub kept: u64,
    /// Media packets left out by the sampling.
    pub media_sampled_out: u64,
    /// Packets pushed out of a full ring.
    pub ring_overflow: u64,
    /// Recordings refused because `MAX_RECORDING` lines were recorded already.
    pub recording_refused: u64,
    /// Lines that lost their ring to make room for another.
    pub line_evictions: u64,
}

/// One worker's rings and the lines it records.
pub struct LineRings {
    limits: RingLimits,
    net: NetworkConfig,
    rings: TimedTable<IpAddr, LineRing>,
    /// Lines whose alert is open -> alert id.
    recording: FastMap<IpAddr, Arc<str>>,
    recorded: Vec<(Arc<str>, KeptPacket)>,
    bytes: usize,
    counters: RingCounters,
}

impl LineRings {
    pub fn new(limits: RingLimits, net: NetworkConfig) -> Self {
        LineRings {
            rings: TimedTable::new(limits.lines),
            limits,
            net,
            recording: FastMap::default(),
            recorded: Vec::new(),
            bytes: 0,
            counters: RingCounters::default(),
        }
    }

    /// New home/domestic networks after a reload (the rings stay).
    pub fn set_network(&mut self, net: &NetworkConfig) {
        self.net = net.clone();
    }

    /// Keeps `pkt` in its line's ring (or for its recording) when it is signalling or sampled
    /// media of a line; looks at the frame itself (`decode::peek`). The engine's workers use
    /// [`on_decoded`](Self::on_decoded) instead.
    pub fn on_packet(&mut self, pkt: &RawPacket<'_>) {
        let seen = peek(pkt.link, pkt.data, &self.net).map(|p| p.innermost());
        self.on_decoded(pkt, seen.as_ref());
    }

    /// [`on_packet`](Self::on_packet) with the frame's innermost IP header as the engine's
    /// decoder saw it (`Engine::innermost`): the frame is not walked a second time.
    pub fn on_decoded(&mut self, pkt: &RawPacket<'_>, seen: Option<&Innermost>) {
        let Some(p) = seen else {
            return;
        };
        let (line, is_line) = p.line(&self.net);
        if !is_line {
            return;
        }
        let class = classify(p);
        if class == Class::Ignored {
            return;
        }
        if !self.rings.contains(&line) && self.rings.len() >= self.rings.capacity() {
            // The line whose last packet is oldest makes room (its bytes leave with it).
            if let Some((_, old)) = self.rings.pop_first() {
                self.bytes = self.bytes.saturating_sub(old.bytes);
                self.counters.line_evictions += 1;
            }
        }
        let limits = &self.limits;
        // Recency to the second: a line's entry moves in the table's order at most once a second,
        // not on every packet (the move is the costliest step here).
        let recency = Timestamp(pkt.ts.micros().div_euclid(1_000_000) * 1_000_000);
        let Some(ring) = self.rings.touch_or_insert(line, recency, LineRing::default) else {
            return;
        };
        let sip = match class {
            Class::Media(flow) => {
                let pos = ring.flows.iter().position(|(k, _)| *k == flow);
                let n = match pos {
                    Some(i) => match ring.flows.get_mut(i) {
                        Some((_, n)) => n,
                        None => return,
                    },
                    None if ring.flows.len() < FLOWS_PER_LINE => {
                        ring.flows.push((flow, 0));
                        match ring.flows.last_mut() {
                            Some((_, n)) => n,
                            None => return,
                        }
                    }
                    None => &mut ring.other_flows,
                };
                *n += 1;
                let first = u64::from(limits.media_first);
                let keep = *n <= first || (*n - first) % u64::from(limits.media_every) == 0;
                if !keep {
                    self.counters.media_sampled_out += 1;
                    return;
                }
                false
            }
            _ => true,
        };
        let kept = KeptPacket {
            ts: pkt.ts,
            link: pkt.link,
            wire_len: pkt.wire_len,
            data: pkt.data.into(),
            sip,
            pre_alert: false,
        };
        self.counters.kept += 1;
        if let Some(id) = self.recording.get(&line) {
            self.recorded.push((id.clone(), kept));
            return;
        }
        ring.bytes += kept.cost();
        self.bytes += kept.cost();
        ring.packets.push_back(kept);
        while ring.packets.len() > limits.packets || ring.bytes > limits.bytes {
            let Some(old) = ring.packets.pop_front() else {
                break;
            };
            ring.bytes = ring.bytes.saturating_sub(old.cost());
            self.bytes = self.bytes.saturating_sub(old.cost());
            self.counters.ring_overflow += 1;
        }
    }

    /// Starts recording `line` for alert `id`: returns its ring (marked pre-alert, oldest
    /// first); from now on its kept packets go to `take_recorded`. False (and nothing) when
    /// the line is recorded already or too many are.
    pub fn start(&mut self, line: IpAddr, id: &str) -> Option<Vec<KeptPacket>> {
        if self.recording.contains_key(&line) {
            return None;
        }
        if self.recording.len() >= MAX_RECORDING {
            self.counters.recording_refused += 1;
            return None;
        }
        self.recording.insert(line, Arc::from(id));
        let Some(ring) = self.rings.get_mut(&line) else {
            return Some(Vec::new());
        };
        self.bytes = self.bytes.saturating_sub(ring.bytes);
        ring.bytes = 0;
        let mut out: Vec<KeptPacket> = ring.packets.drain(..).collect();
        for p in &mut out {
            p.pre_alert = true;
        }
        Some(out)
    }

    /// Stops recording `line` (its alert cleared); true when it was recorded.
    pub fn stop(&mut self, line: IpAddr) -> bool {
        self.recording.remove(&line).is_some()
    }

    /// Packets of recorded lines kept since the last call, in arrival order.
    pub fn take_recorded(&mut self) -> Vec<(Arc<str>, KeptPacket)> {
        std::mem::take(&mut self.recorded)
    }

    /// Lines with a ring.
    pub fn lines(&self) -> usize {
        self.rings.len()
    }

    /// Bytes held in rings (data plus bookkeeping).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Lines that lost their ring to make room for another.
    pub fn line_evictions(&self) -> u64 {
        self.counters.line_evictions
    }

    pub fn counters(&self) -> &RingCounters {
        &self.counters
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    const LINE: [u8; 4] = [100, 64, 0, 7];
    const PEER: [u8; 4] = [203, 0, 113, 5];

    fn net() -> NetworkConfig {
        NetworkConfig {
            home: vec!["100.64.0.0/10".parse().unwrap()],
            ..Default::default()
        }
    }

    fn udp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        PacketBuilder::ipv4(src, dst, 64)
            .udp(sport, dport)
            .write(&mut v, payload)
            .unwrap();
        v
    }

    fn limits() -> RingLimits {
        RingLimits {
            lines: 4,
            packets: 100,
            bytes: 1 << 20,
            media_first: 3,
            media_every: 10,
        }
    }

    fn feed(r: &mut LineRings, ts: i64, frame: &[u8]) {
        r.on_packet(&RawPacket {
            ts: Timestamp(ts),
            link: LinkType::RAW,
            data: frame,
            wire_len: frame.len() as u32,
        });
    }

    const INVITE: &[u8] = b"INVITE sip:1@x SIP/2.0\r\nCall-ID: a\r\n\r\n";

    #[test]
    fn signalling_is_kept_and_media_sampled_per_flow() {
        let mut r = LineRings::new(limits(), net());
        feed(&mut r, 1, &udp(PEER, LINE, 5060, 5060, INVITE));
        for i in 0..33 {
            // One flow, both directions.
            let f = if i % 2 == 0 {
                udp(PEER, LINE, 10000, 20000, &[0x80; 40])
            } else {
                udp(LINE, PEER, 20000, 10000, &[0x80; 40])
            };
            feed(&mut r, 2 + i, &f);
        }
        // Transit traffic (no home end) is not kept.
        feed(&mut r, 50, &udp(PEER, [8, 8, 8, 8], 1, 2, INVITE));
        let got = r.start(IpAddr::from(LINE), "sbx-1").unwrap();
        // 1 INVITE + the first 3 media packets + packets 13, 23, 33 of the flow.
        assert_eq!(got.len(), 1 + 3 + 3, "{got:?}");
        assert!(got[0].sip && got.iter().skip(1).all(|p| !p.sip));
        assert!(got.iter().all(|p| p.pre_alert));
        assert_eq!(r.counters().media_sampled_out, 33 - 6);
        assert_eq!(r.lines(), 1);
    }

    #[test]
    fn a_ring_keeps_its_newest_packets_within_its_bounds() {
        let mut l = limits();
        l.packets = 16;
        let mut r = LineRings::new(l, net());
        for i in 0..40u8 {
            let msg = format!("OPTIONS sip:{i}@x SIP/2.0\r\n\r\n");
            feed(
                &mut r,
                i64::from(i),
                &udp(PEER, LINE, 5060, 5060, msg.as_bytes()),
            );
        }
        assert_eq!(r.counters().ring_overflow, 24);
        let got = r.start(IpAddr::from(LINE), "sbx-1").unwrap();
        assert_eq!(got.len(), 16);
        assert_eq!(got[0].ts, Timestamp(24), "the oldest went first");
        assert_eq!(r.bytes(), 0, "the ring's bytes left with it");

        let mut l = limits();
        l.bytes = 4096;
        let mut r = LineRings::new(l, net());
        for i in 0..100 {
            feed(&mut r, i, &udp(PEER, LINE, 5060, 5060, &[b'A'; 1000]));
        }
        assert!(r.bytes() <= 4096, "{}", r.bytes());
    }

    #[test]
    fn the_line_idle_longest_loses_its_ring_when_the_table_is_full() {
        let mut r = LineRings::new(limits(), net());
        for (i, last) in (1..=5u8).enumerate() {
            feed(
                &mut r,
                i as i64,
                &udp(PEER, [100, 64, 0, last], 5060, 5060, INVITE),
            );
        }
        assert_eq!(r.lines(), 4);
        assert_eq!(r.line_evictions(), 1);
        assert_eq!(r.start(IpAddr::from([100, 64, 0, 1]), "x"), Some(vec![]));
    }

    #[test]
    fn a_recorded_line_streams_and_stops() {
        let mut r = LineRings::new(limits(), net());
        let line = IpAddr::from(LINE);
        assert_eq!(r.start(line, "sbx-a"), Some(vec![]));
        assert_eq!(r.start(line, "sbx-a"), None, "already recorded");
        feed(&mut r, 1, &udp(PEER, LINE, 5060, 5060, INVITE));
        let rec = r.take_recorded();
        assert_eq!(rec.len(), 1);
        assert_eq!(&*rec[0].0, "sbx-a");
        assert!(!rec[0].1.pre_alert);
        assert!(r.stop(line));
        feed(&mut r, 2, &udp(PEER, LINE, 5060, 5060, INVITE));
        assert!(r.take_recorded().is_empty());
        assert_eq!(r.start(line, "sbx-b").map(|v| v.len()), Some(1));
    }

    #[test]
    fn the_engines_decode_files_frames_as_peek_does() {
        use simboxd_core::config::LimitsConfig;
        use simboxd_core::decode::Decoder;
        let mut frames = vec![
            udp(PEER, LINE, 5060, 5060, INVITE),
            udp(LINE, PEER, 20000, 10000, &[0x80; 40]),
            udp(PEER, [8, 8, 8, 8], 1, 2, INVITE),
        ];
        for i in 0..30u8 {
            frames.push(udp(
                PEER,
                LINE,
                10000 + u16::from(i % 3),
                20000,
                &[0x80; 60],
            ));
        }
        // SIP over TCP (port 5060) and a TCP segment elsewhere.
        for (sport, payload) in [(5060u16, &b"x"[..]), (40000, b"hello")] {
            let mut v = Vec::new();
            PacketBuilder::ipv4(PEER, LINE, 64)
                .tcp(sport, 40001, 1, 1000)
                .write(&mut v, payload)
                .unwrap();
            frames.push(v);
        }
        // VXLAN between two collectors inside the home range: the inner packet's line.
        let mut vx = vec![0x08, 0, 0, 0, 0, 0, 0x2a, 0];
        vx.extend_from_slice(&[2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00]);
        vx.extend_from_slice(&udp(PEER, LINE, 5060, 5060, INVITE));
        frames.push(udp([100, 64, 9, 1], [100, 64, 9, 2], 4000, 4789, &vx));
        // An IPv4 packet in two fragments (the later one has no UDP header).
        let whole = udp(PEER, LINE, 5060, 5060, &[b'A'; 64]);
        let body = &whole[20..];
        for (off, more, part) in [(0u16, true, &body[..40]), (5, false, &body[40..])] {
            let mut h = whole[..20].to_vec();
            let total = (20 + part.len()) as u16;
            h[2..4].copy_from_slice(&total.to_be_bytes());
            h[6..8].copy_from_slice(&(off | if more { 0x2000 } else { 0 }).to_be_bytes());
            h[10..12].copy_from_slice(&[0, 0]);
            h.extend_from_slice(part);
            frames.push(h);
        }
        let mut by_peek = LineRings::new(limits(), net());
        let mut by_engine = LineRings::new(limits(), net());
        let mut dec = Decoder::new(&LimitsConfig::default());
        dec.keep_innermost(true);
        for (i, f) in frames.iter().enumerate() {
            let pkt = RawPacket {
                ts: Timestamp(i as i64),
                link: LinkType::RAW,
                data: f,
                wire_len: f.len() as u32,
            };
            by_peek.on_packet(&pkt);
            dec.decode(&pkt, &mut |_| {});
            by_engine.on_decoded(&pkt, dec.innermost());
        }
        assert_eq!(by_peek.counters(), by_engine.counters());
        assert!(by_peek.counters().kept > 10, "{:?}", by_peek.counters());
        assert_eq!(by_peek.lines(), by_engine.lines());
        let line = IpAddr::from(LINE);
        let a = by_peek.start(line, "a").unwrap();
        assert_eq!(a, by_engine.start(line, "a").unwrap());
        assert_eq!(a.iter().filter(|p| p.sip).count(), 4, "{a:?}");
    }

    #[test]
    fn cut_and_odd_frames_do_not_panic() {
        let mut r = LineRings::new(limits(), net());
        let f = udp(PEER, LINE, 5060, 5060, INVITE);
        for len in 0..f.len() {
            feed(&mut r, len as i64, f.get(..len).unwrap());
        }
        feed(&mut r, 0, &[]);
        feed(&mut r, 0, &[0x45; 3]);
    }
}
