//! The discrete-event core: lines schedule calls, calls emit SIP and media packets, and one binary
//! heap merges every active source by time, so memory grows with concurrent calls, not duration.
//!
//! Determinism: each line draws from its own ChaCha8 stream (`set_stream(line index)`), media
//! jitter and payload bytes come from per-stream xorshift states seeded from the line's draws, and
//! heap ties break on insertion order.

use super::noise::Source;
use super::numbers;
use super::population::{Line, Plan, Shape};
use super::sipmsg::{Dialog, Msg};
use super::wire::{PcapWriter, MSS};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, Write};
use std::net::SocketAddr;

/// Per-stream generator for jitter and payload bytes (xorshift64*).
#[derive(Clone, Copy, Debug)]
pub struct Xs(pub u64);

impl Xs {
    pub fn new(seed: u64) -> Xs {
        Xs(seed | 1)
    }
    #[inline]
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in `-j..=j`.
    #[inline]
    pub fn jitter(&mut self, j: i64) -> i64 {
        if j <= 0 {
            return 0;
        }
        (self.next() % (2 * j as u64 + 1)) as i64 - j
    }
    pub fn fill(&mut self, buf: &mut [u8]) {
        for c in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            let n = c.len();
            c.copy_from_slice(v.get(..n).unwrap_or(&[]));
        }
    }
}

/// What a media stream carries.
#[derive(Clone, Copy, Debug)]
pub enum StreamKind {
    /// RTP with a valid header; `scrambled` only changes nothing on the wire (payload is random
    /// either way) but is kept for clarity of the call's mode.
    Rtp {
        ssrc: u32,
        seq: u16,
        ts: u32,
        ts_step: u32,
        pt: u8,
        payload: u16,
        marker: bool,
    },
    /// Bytes with no RTP header, length uniform in `min..=max`.
    Opaque { min: u16, max: u16 },
}

/// One direction of media (or other steady UDP) from `next` until `end`.
#[derive(Clone, Debug)]
pub struct Stream {
    pub from_line: bool,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub base: i64,
    pub n: u64,
    pub interval: i64,
    pub jitter: i64,
    pub end: i64,
    pub next: i64,
    pub kind: StreamKind,
    pub rng: Xs,
}

impl Stream {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        from_line: bool,
        src: SocketAddr,
        dst: SocketAddr,
        start: i64,
        end: i64,
        interval: i64,
        jitter: i64,
        kind: StreamKind,
        seed: u64,
    ) -> Stream {
        // Jitter below half the interval keeps the stream in order.
        let jitter = jitter.min(interval / 2 - 1).max(0);
        let mut s = Stream {
            from_line,
            src,
            dst,
            base: start,
            n: 0,
            interval: interval.max(1000),
            jitter,
            end,
            next: start,
            kind,
            rng: Xs::new(seed),
        };
        s.next = start + s.rng.jitter(jitter).abs();
        s
    }

    fn advance(&mut self) {
        self.n += 1;
        let nominal = self.base + self.n as i64 * self.interval;
        self.next = nominal + self.rng.jitter(self.jitter);
        if let StreamKind::Rtp {
            seq,
            ts,
            ts_step,
            marker,
            ..
        } = &mut self.kind
        {
            *seq = seq.wrapping_add(1);
            *ts = ts.wrapping_add(*ts_step);
            *marker = false;
        }
    }

    fn live(&self) -> bool {
        self.next < self.end
    }
}

/// One scheduled signalling message; `coalesce` sends it in one TCP segment with the next.
#[derive(Clone, Copy, Debug)]
pub struct Step {
    pub t: i64,
    pub msg: Msg,
    pub coalesce: bool,
}

/// An active call, registration transaction or media-only session of one line.
#[derive(Debug)]
pub struct Exchange {
    pub line: u32,
    pub dialog: Option<Box<Dialog>>,
    pub line_is_caller: bool,
    pub script: Vec<Step>,
    pub pos: usize,
    pub streams: Vec<Stream>,
    /// Counted in the line's active calls (released when the exchange ends).
    pub counts_active: bool,
    /// Sent at the line by someone else (noise): never scrambled with the line's key.
    pub plain: bool,
    /// TTL of the far end's packets when it is not the line's usual peer.
    pub peer_ttl: Option<u8>,
}

impl Exchange {
    fn next_time(&self) -> Option<i64> {
        let mut t = self.script.get(self.pos).map(|s| s.t);
        for s in &self.streams {
            if s.live() {
                t = Some(t.map_or(s.next, |x: i64| x.min(s.next)));
            }
        }
        t
    }
}

#[derive(Debug)]
pub enum Task {
    /// A channel of a gateway or dialer: one call after another.
    Channel {
        line: u32,
        ch: u32,
    },
    /// Random arrivals of calls or sessions on a line.
    Arrivals {
        line: u32,
    },
    /// Periodic REGISTER of one account.
    Register {
        line: u32,
        account: u32,
    },
    /// A noise source's next request (`slot`: its channel or target).
    Noise {
        src: u32,
        slot: u32,
    },
    Ex(Box<Exchange>),
}

pub struct Engine<W: Write> {
    pub w: PcapWriter<W>,
    pub lines: Vec<Line>,
    pub noise: Vec<Source>,
    tasks: Vec<Option<Task>>,
    free: Vec<u32>,
    heap: BinaryHeap<Reverse<(i64, u64, u32)>>,
    seq: u64,
    pub start: i64,
    pub end: i64,
    buf: Vec<u8>,
    buf2: Vec<u8>,
}

impl<W: Write> Engine<W> {
    pub fn new(
        w: PcapWriter<W>,
        lines: Vec<Line>,
        noise: Vec<Source>,
        start: i64,
        end: i64,
    ) -> Self {
        Engine {
            w,
            lines,
            noise,
            tasks: Vec::new(),
            free: Vec::new(),
            heap: BinaryHeap::new(),
            seq: 0,
            start,
            end,
            buf: Vec::with_capacity(4096),
            buf2: Vec::with_capacity(4096),
        }
    }

    pub fn schedule(&mut self, t: i64, task: Task) {
        if t >= self.end {
            if let Task::Ex(ex) = &task {
                if ex.counts_active {
                    self.release(ex.line);
                }
            }
            return;
        }
        let slot = match self.free.pop() {
            Some(s) => {
                if let Some(x) = self.tasks.get_mut(s as usize) {
                    *x = Some(task);
                }
                s
            }
            None => {
                self.tasks.push(Some(task));
                (self.tasks.len() - 1) as u32
            }
        };
        self.seq += 1;
        self.heap.push(Reverse((t, self.seq, slot)));
    }

    fn release(&mut self, line: u32) {
        if let Some(l) = self.lines.get_mut(line as usize) {
            l.active = l.active.saturating_sub(1);
        }
    }

    /// Runs until the end time; returns packets written.
    pub fn run(&mut self) -> io::Result<u64> {
        while let Some(Reverse((t, _, slot))) = self.heap.pop() {
            if t >= self.end {
                break;
            }
            let Some(task) = self.tasks.get_mut(slot as usize).and_then(Option::take) else {
                continue;
            };
            self.free.push(slot);
            match task {
                Task::Channel { line, ch } => {
                    let next = self.channel_step(line, ch, t);
                    self.schedule(next, Task::Channel { line, ch });
                }
                Task::Arrivals { line } => {
                    if let Some(next) = self.arrival_step(line, t) {
                        self.schedule(next, Task::Arrivals { line });
                    }
                }
                Task::Register { line, account } => {
                    let next = self.register_step(line, account, t);
                    self.schedule(next, Task::Register { line, account });
                }
                Task::Noise { src, slot } => {
                    let Some(source) = self.noise.get_mut(src as usize) else {
                        continue;
                    };
                    let (exchanges, next) = source.step(slot, t, &self.lines);
                    for ex in exchanges {
                        self.start_exchange(ex, t);
                    }
                    if let Some(n) = next {
                        self.schedule(n.max(t + 1), Task::Noise { src, slot });
                    }
                }
                Task::Ex(mut ex) => {
                    self.emit_one(&mut ex, t)?;
                    match ex.next_time() {
                        Some(n) => self.schedule(n, Task::Ex(ex)),
                        None => {
                            if ex.counts_active {
                                self.release(ex.line);
                            }
                        }
                    }
                }
            }
        }
        // Release what the end cut off (keeps `active` honest for callers that inspect lines).
        for slot in self.tasks.iter_mut() {
            if let Some(Task::Ex(ex)) = slot.take() {
                if ex.counts_active {
                    if let Some(l) = self.lines.get_mut(ex.line as usize) {
                        l.active = l.active.saturating_sub(1);
                    }
                }
            }
        }
        self.w.flush()?;
        Ok(self.w.packets())
    }

    /// Gateway/dialer channel: place one attempt now (if on shift) and return when to try again.
    fn channel_step(&mut self, line: u32, ch: u32, t: i64) -> i64 {
        let Some(l) = self.lines.get_mut(line as usize) else {
            return i64::MAX;
        };
        if let Some(next_on) = l.off_shift_until(t, self.start) {
            return next_on;
        }
        let plan = l.plan_channel_call(ch, t);
        let end = self.start_call(line, plan, t);
        let gap = match self.lines.get_mut(line as usize) {
            Some(l) => l.channel_gap_us(),
            None => 1_000_000,
        };
        end + gap
    }

    fn arrival_step(&mut self, line: u32, t: i64) -> Option<i64> {
        let start = self.start;
        let l = self.lines.get_mut(line as usize)?;
        let shape = l.arrival(t, start);
        let next = l.next_arrival_us(t, start);
        match shape {
            Shape::None => {}
            Shape::Call(plan) => {
                self.start_call(line, *plan, t);
            }
            Shape::Flow(streams) => {
                if let Some(l) = self.lines.get_mut(line as usize) {
                    l.active += 1;
                }
                let ex = Exchange {
                    line,
                    dialog: None,
                    line_is_caller: true,
                    script: Vec::new(),
                    pos: 0,
                    streams,
                    counts_active: true,
                    plain: false,
                    peer_ttl: None,
                };
                match ex.next_time() {
                    Some(n) => self.schedule(n, Task::Ex(Box::new(ex))),
                    None => self.release(line),
                }
            }
        }
        Some(next)
    }

    fn register_step(&mut self, line: u32, account: u32, t: i64) -> i64 {
        let Some(l) = self.lines.get_mut(line as usize) else {
            return i64::MAX;
        };
        let (ex, next) = l.register(line, account, t);
        if let Some(n) = ex.next_time() {
            self.schedule(n, Task::Ex(Box::new(ex)));
        }
        next
    }

    /// Schedules an exchange that noise opened at time `t`.
    fn start_exchange(&mut self, ex: Exchange, t: i64) {
        if ex.counts_active {
            if let Some(l) = self.lines.get_mut(ex.line as usize) {
                l.active += 1;
            }
        }
        match ex.next_time() {
            Some(n) => self.schedule(n.max(t), Task::Ex(Box::new(ex))),
            None => {
                if ex.counts_active {
                    self.release(ex.line);
                }
            }
        }
    }

    /// Turns a plan into an exchange; returns the time of its last packet.
    fn start_call(&mut self, line: u32, plan: Plan, t: i64) -> i64 {
        let end = plan.end;
        if let Some(l) = self.lines.get_mut(line as usize) {
            l.active += 1;
            l.calls += 1;
        }
        let ex = Exchange {
            line,
            dialog: Some(plan.dialog),
            line_is_caller: plan.line_is_caller,
            script: plan.script,
            pos: 0,
            streams: plan.streams,
            counts_active: true,
            plain: false,
            peer_ttl: None,
        };
        match ex.next_time() {
            Some(n) => self.schedule(n.max(t), Task::Ex(Box::new(ex))),
            None => self.release(line),
        }
        end
    }

    /// Emits the exchange's earliest packet (time `t`).
    fn emit_one(&mut self, ex: &mut Exchange, t: i64) -> io::Result<()> {
        // Media first when tied with signalling at the same time is fine either way; pick the
        // script on ties so a 200 OK precedes the first answered packet.
        if let Some(step) = ex.script.get(ex.pos).copied() {
            if step.t <= t {
                ex.pos += 1;
                let mut next = None;
                // Only a byte stream can carry two messages in one packet.
                let tcp = ex.dialog.as_ref().is_some_and(|d| d.tcp);
                if step.coalesce && tcp {
                    if let Some(n) = ex.script.get(ex.pos).copied() {
                        if n.msg.sent_by_caller() == step.msg.sent_by_caller() {
                            ex.pos += 1;
                            next = Some(n.msg);
                        }
                    }
                }
                return self.emit_sip(ex, step.msg, next, t);
            }
        }
        let Some(idx) = ex
            .streams
            .iter()
            .enumerate()
            .filter(|(_, s)| s.live() && s.next <= t)
            .min_by_key(|(_, s)| s.next)
            .map(|(i, _)| i)
        else {
            return Ok(());
        };
        let Some(s) = ex.streams.get_mut(idx) else {
            return Ok(());
        };
        let Some(l) = self.lines.get_mut(ex.line as usize) else {
            return Ok(());
        };
        self.buf.clear();
        match s.kind {
            StreamKind::Rtp {
                ssrc,
                seq,
                ts,
                pt,
                payload,
                marker,
                ..
            } => {
                self.buf.push(0x80);
                self.buf.push(pt | if marker { 0x80 } else { 0 });
                self.buf.extend_from_slice(&seq.to_be_bytes());
                self.buf.extend_from_slice(&ts.to_be_bytes());
                self.buf.extend_from_slice(&ssrc.to_be_bytes());
                let n = self.buf.len();
                self.buf.resize(n + payload as usize, 0);
                if let Some(p) = self.buf.get_mut(n..) {
                    s.rng.fill(p);
                }
            }
            StreamKind::Opaque { min, max } => {
                let span = u64::from(max.saturating_sub(min)) + 1;
                let len = min as usize + (s.rng.next() % span) as usize;
                self.buf.resize(len, 0);
                s.rng.fill(&mut self.buf);
                shape_opaque_head(&mut self.buf);
            }
        }
        let (id, ttl) = l.ip_id_ttl(s.from_line);
        let ttl = far_ttl(ex.peer_ttl, s.from_line, ttl);
        let l2 = l.l2;
        self.w
            .udp(s.next, &l2, s.from_line, s.src, s.dst, id, ttl, &self.buf)?;
        s.advance();
        Ok(())
    }

    fn emit_sip(
        &mut self,
        ex: &mut Exchange,
        msg: Msg,
        also: Option<Msg>,
        t: i64,
    ) -> io::Result<()> {
        let Some(d) = ex.dialog.as_ref() else {
            return Ok(());
        };
        d.render(msg, &mut self.buf);
        if let Some(m2) = also {
            d.render(m2, &mut self.buf2);
            self.buf.extend_from_slice(&self.buf2);
        }
        let from_line = msg.sent_by_caller() == ex.line_is_caller;
        let (line_party, peer_party) = if ex.line_is_caller {
            (&d.caller, &d.callee)
        } else {
            (&d.callee, &d.caller)
        };
        let (src, dst) = if from_line {
            (line_party.sock, peer_party.sock)
        } else {
            (peer_party.sock, line_party.sock)
        };
        let tcp = d.tcp;
        let Some(l) = self.lines.get_mut(ex.line as usize) else {
            return Ok(());
        };
        let plain = ex.plain;
        let peer_ttl = ex.peer_ttl;
        if let Some(key) = l.scramble.filter(|_| !plain) {
            numbers::scramble(key, l.calls ^ u64::from(l.ip_id), &mut self.buf);
            shape_opaque_head(&mut self.buf);
        }
        if tcp {
            let split = l.tcp_split(self.buf.len());
            send_tcp(&mut self.w, l, from_line, t, &self.buf, split)
        } else {
            let (id, ttl) = l.ip_id_ttl(from_line);
            let ttl = far_ttl(peer_ttl, from_line, ttl);
            let l2 = l.l2;
            self.w.udp(t, &l2, from_line, src, dst, id, ttl, &self.buf)
        }
    }
}

/// The TTL of a packet: the exchange's own far end's when it has one.
fn far_ttl(peer_ttl: Option<u8>, from_line: bool, ttl: u8) -> u8 {
    match peer_ttl {
        Some(p) if !from_line => p,
        _ => ttl,
    }
}

/// Gives an opaque payload the head of an encrypted transport: the first eight bytes in
/// 0x50..=0x7f (first byte `01xxxxxx` like a QUIC short header). Never RTP/RTCP version 2, and
/// none of the values tshark's heuristic dissectors key on (0x80-0xff magic for RTCP on odd
/// ports, Thrift, Pathport; 0x4x TPDU codes for CLTP/GOOSE), so noise is not claimed as a
/// malformed packet of some other protocol.
pub fn shape_opaque_head(buf: &mut [u8]) {
    for b in buf.iter_mut().take(8) {
        *b = 0x50 + *b % 0x30;
    }
}

/// Sends `data` on the line's TCP connection (handshake first if needed), in MSS-sized
/// segments, optionally split once at `split`.
fn send_tcp<W: Write>(
    w: &mut PcapWriter<W>,
    l: &mut Line,
    from_line: bool,
    t: i64,
    data: &[u8],
    split: Option<usize>,
) -> io::Result<()> {
    let l2 = l.l2;
    let Some(mut c) = l.tcp else {
        return Ok(());
    };
    let line_sock = c.line;
    let peer_sock = c.peer;
    if !c.up {
        let (id, ttl) = l.ip_id_ttl(true);
        w.tcp(
            t,
            &l2,
            true,
            line_sock,
            peer_sock,
            id,
            ttl,
            c.line_seq,
            0,
            0x02,
            &[],
        )?;
        let (id, ttl) = l.ip_id_ttl(false);
        w.tcp(
            t,
            &l2,
            false,
            peer_sock,
            line_sock,
            id,
            ttl,
            c.peer_seq,
            c.line_seq.wrapping_add(1),
            0x12,
            &[],
        )?;
        c.line_seq = c.line_seq.wrapping_add(1);
        c.peer_seq = c.peer_seq.wrapping_add(1);
        let (id, ttl) = l.ip_id_ttl(true);
        w.tcp(
            t,
            &l2,
            true,
            line_sock,
            peer_sock,
            id,
            ttl,
            c.line_seq,
            c.peer_seq,
            0x10,
            &[],
        )?;
        c.up = true;
    }
    let mut cuts: Vec<usize> = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        let mut n = (data.len() - pos).min(MSS);
        if let Some(s) = split {
            if s > pos && s < pos + n {
                n = s - pos;
            }
        }
        cuts.push(n);
        pos += n;
    }
    let mut pos = 0;
    for n in cuts {
        let seg = data.get(pos..pos + n).unwrap_or(&[]);
        let (id, ttl) = l.ip_id_ttl(from_line);
        if from_line {
            w.tcp(
                t, &l2, true, line_sock, peer_sock, id, ttl, c.line_seq, c.peer_seq, 0x18, seg,
            )?;
            c.line_seq = c.line_seq.wrapping_add(n as u32);
        } else {
            w.tcp(
                t, &l2, false, peer_sock, line_sock, id, ttl, c.peer_seq, c.line_seq, 0x18, seg,
            )?;
            c.peer_seq = c.peer_seq.wrapping_add(n as u32);
        }
        pos += n;
    }
    l.tcp = Some(c);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_in_bounds_and_streams_stay_in_order() {
        let mut x = Xs::new(5);
        for _ in 0..10_000 {
            let j = x.jitter(9_999);
            assert!((-9_999..=9_999).contains(&j));
        }
        let a: SocketAddr = "100.64.1.2:10000".parse().unwrap();
        let b: SocketAddr = "203.0.113.1:20000".parse().unwrap();
        let kind = StreamKind::Rtp {
            ssrc: 1,
            seq: 65534,
            ts: u32::MAX - 100,
            ts_step: 160,
            pt: 18,
            payload: 20,
            marker: true,
        };
        // Asked for more jitter than half the interval: clamped so packets never reorder.
        let mut s = Stream::new(true, a, b, 0, 1_000_000, 20_000, 50_000, kind, 9);
        let mut last = -1;
        let mut n = 0;
        while s.live() {
            assert!(s.next > last, "{} after {}", s.next, last);
            last = s.next;
            s.advance();
            n += 1;
        }
        assert!((49..=51).contains(&n), "{n} packets in 1 s at 20 ms");
        match s.kind {
            StreamKind::Rtp {
                seq, ts, marker, ..
            } => {
                assert_eq!(seq, 65534u16.wrapping_add(n as u16));
                assert_eq!(ts, (u32::MAX - 100).wrapping_add(160 * n as u32));
                assert!(!marker);
            }
            StreamKind::Opaque { .. } => unreachable!(),
        }
    }
}
