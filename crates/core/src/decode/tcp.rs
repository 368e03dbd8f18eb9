//! SIP over TCP: per-direction stream reassembly and message framing by Content-Length, or by
//! WebSocket frames (RFC 7118).
//!
//! Contract: a stream (one direction of a 4-tuple) is tracked once a segment's payload starts like
//! a SIP message, like an HTTP Upgrade to WebSocket with the `sip` subprotocol (request or `101`
//! answer), or like a WebSocket frame carrying a SIP message (a connection met after its
//! handshake), on any port. A WebSocket stream's frames are unmasked and a message (its frames
//! up to the final one, at most `tcp_stream_bytes`) is emitted once as a `Transport::Ws`
//! datagram; a close frame ends the stream, a bad frame makes it resynchronise (`ws_framing`). Bytes are put in sequence order (a small bounded out-of-order
//! buffer; beyond it the stream resynchronises on the next segment that starts a message), and
//! each complete message (headers plus Content-Length body; no Content-Length means no body) is
//! emitted once as a `Datagram`. A message larger than `tcp_stream_bytes` is dropped and counted,
//! and the stream resynchronises. FIN removes the direction, RST both. Idle streams expire; a full
//! table or a full byte budget evicts the least recently used stream.

use super::ws::{self, Upgrade};
use crate::model::{Counters, Datagram, Timestamp, Transport};
use crate::table::TimedTable;
use std::net::SocketAddr;

/// Out-of-order segments held per stream.
const MAX_OOO: usize = 8;

pub(crate) const ERR_TCP_OVERSIZE: &str = "tcp_oversize";
pub(crate) const ERR_TCP_GAP: &str = "tcp_gap";
pub(crate) const ERR_TCP_FRAMING: &str = "tcp_framing";
pub(crate) const ERR_TCP_TOTAL: &str = "tcp_total";
pub(crate) const EVICT_TCP_STREAMS: &str = "tcp_streams";
pub(crate) const ERR_WS_FRAMING: &str = "ws_framing";

/// What a stream carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// SIP messages framed by Content-Length.
    Sip,
    /// An HTTP Upgrade to WebSocket (`sip` subprotocol) whose headers are not complete yet.
    WsHandshake,
    /// WebSocket frames.
    Ws,
}

/// What a new stream starting with `p` carries, if it is one to follow.
fn stream_kind(p: &[u8]) -> Option<Kind> {
    if starts_like_sip(p) {
        Some(Kind::Sip)
    } else if ws::starts_like_http_upgrade(p) {
        match ws::upgrade(p) {
            Upgrade::Sip(_) | Upgrade::Incomplete => Some(Kind::WsHandshake),
            Upgrade::No => None,
        }
    } else if ws::sip_frame_start(p) {
        Some(Kind::Ws)
    } else {
        None
    }
}

/// Whether a stream of `kind` that lost sync can pick up again at `p`.
fn starts_message(kind: Kind, p: &[u8]) -> bool {
    match kind {
        Kind::Sip => starts_like_sip(p),
        Kind::WsHandshake | Kind::Ws => ws::sip_frame_start(p),
    }
}

/// Request methods that open a SIP message (RFC 3261 and its extensions).
const METHODS: [&[u8]; 14] = [
    b"INVITE",
    b"ACK",
    b"BYE",
    b"CANCEL",
    b"REGISTER",
    b"OPTIONS",
    b"PRACK",
    b"SUBSCRIBE",
    b"NOTIFY",
    b"PUBLISH",
    b"INFO",
    b"REFER",
    b"MESSAGE",
    b"UPDATE",
];
const STATUS_PREFIX: &[u8] = b"SIP/2.0 ";

#[derive(Debug, PartialEq, Eq)]
enum Start {
    Yes,
    /// Too short to tell: a proper prefix of a start.
    Maybe,
    No,
}

fn sip_start(p: &[u8]) -> Start {
    let mut maybe = false;
    let candidates = METHODS
        .iter()
        .map(|m| (*m, true))
        .chain([(STATUS_PREFIX, false)]);
    for (token, needs_space) in candidates {
        let want = token.len() + usize::from(needs_space);
        let n = p.len().min(want);
        let head = p.get(..n).unwrap_or_default();
        let matches = head
            .iter()
            .zip(token.iter().chain(b" "))
            .all(|(a, b)| a == b);
        if matches {
            if n < want {
                maybe = true;
            } else if !needs_space || request_line_ok(p) {
                return Start::Yes;
            }
        }
    }
    if maybe {
        Start::Maybe
    } else {
        Start::No
    }
}

/// A request line, once complete, ends with the SIP version (this rejects SSDP `NOTIFY * HTTP/1.1`).
fn request_line_ok(p: &[u8]) -> bool {
    match p.iter().position(|&b| b == b'\n') {
        Some(nl) => {
            let line = p.get(..nl).unwrap_or_default();
            line.strip_suffix(b"\r")
                .unwrap_or(line)
                .ends_with(b" SIP/2.0")
        }
        None => true,
    }
}

/// Whether `payload` starts with a SIP start line: a request method followed by a space (and,
/// when the line is complete, ending in ` SIP/2.0`), or `SIP/2.0 ` (leading CR/LF keep-alives
/// are skipped).
pub fn starts_like_sip(payload: &[u8]) -> bool {
    sip_start(skip_crlf(payload)) == Start::Yes
}

fn skip_crlf(p: &[u8]) -> &[u8] {
    let n = p.iter().take_while(|&&b| b == b'\r' || b == b'\n').count();
    p.get(n..).unwrap_or_default()
}

/// Offset just past the blank line that ends the header block.
pub(crate) fn header_end(b: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(off) = b.get(i..)?.iter().position(|&c| c == b'\n') {
        let nl = i + off;
        match b.get(nl + 1) {
            Some(b'\n') => return Some(nl + 2),
            Some(b'\r') if b.get(nl + 2) == Some(&b'\n') => return Some(nl + 3),
            _ => {}
        }
        i = nl + 1;
    }
    None
}

/// Content-Length from a header block (name case-insensitive, compact form `l`); 0 when absent.
fn content_length(headers: &[u8]) -> Result<usize, ()> {
    for line in headers.split(|&b| b == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = line.get(..colon).unwrap_or_default().trim_ascii();
        if !(name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l")) {
            continue;
        }
        let value = line.get(colon + 1..).unwrap_or_default().trim_ascii();
        if value.is_empty() || value.len() > 9 || !value.iter().all(u8::is_ascii_digit) {
            return Err(());
        }
        return Ok(value
            .iter()
            .fold(0usize, |n, d| n * 10 + usize::from(d - b'0')));
    }
    Ok(0)
}

#[derive(Debug, PartialEq, Eq)]
enum Frame {
    Complete(usize),
    /// More bytes needed; the message's total length once its headers are complete.
    Incomplete(Option<usize>),
    Oversize,
    Invalid,
}

/// Frames the message at the start of `b` (which starts at a message boundary).
fn frame(b: &[u8], max: usize) -> Frame {
    match sip_start(b) {
        Start::No => return Frame::Invalid,
        Start::Maybe => return Frame::Incomplete(None),
        Start::Yes => {}
    }
    let search = b.get(..b.len().min(max)).unwrap_or_default();
    let Some(hdr) = header_end(search) else {
        return if b.len() > max {
            Frame::Oversize
        } else {
            Frame::Incomplete(None)
        };
    };
    let Ok(cl) = content_length(search.get(..hdr).unwrap_or_default()) else {
        return Frame::Invalid;
    };
    match hdr.checked_add(cl) {
        Some(total) if total <= max => {
            if b.len() >= total {
                Frame::Complete(total)
            } else {
                Frame::Incomplete(Some(total))
            }
        }
        _ => Frame::Oversize,
    }
}

/// Why framing stopped before the end of the data.
enum Stop {
    Oversize,
    Invalid,
}

/// How framing a run of bytes ended.
struct Framed {
    /// Bytes consumed (complete messages and keep-alives).
    used: usize,
    /// Why it stopped before the end of the data, if it did.
    stop: Option<Stop>,
    /// Total length of the incomplete message left over, when its headers are complete.
    pending: Option<usize>,
}

/// Emits every complete message in `data`.
fn frame_all(data: &[u8], max: usize, emit: &mut dyn FnMut(&[u8])) -> Framed {
    let done = |used, stop, pending| Framed {
        used,
        stop,
        pending,
    };
    let mut pos = 0;
    loop {
        pos += data
            .get(pos..)
            .unwrap_or_default()
            .iter()
            .take_while(|&&b| b == b'\r' || b == b'\n')
            .count();
        let rest = data.get(pos..).unwrap_or_default();
        if rest.is_empty() {
            return done(pos, None, None);
        }
        match frame(rest, max) {
            Frame::Complete(n) => {
                emit(rest.get(..n).unwrap_or_default());
                pos += n;
            }
            Frame::Incomplete(total) => return done(pos, None, total),
            Frame::Oversize => return done(pos, Some(Stop::Oversize), None),
            Frame::Invalid => return done(pos, Some(Stop::Invalid), None),
        }
    }
}

/// One TCP segment as seen by the stream table.
pub(crate) struct Segment<'a> {
    pub ts: Timestamp,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub seq: u32,
    pub syn: bool,
    pub fin: bool,
    pub rst: bool,
    pub payload: &'a [u8],
    pub ip_len: u32,
}

type Key = (SocketAddr, SocketAddr);

struct Stream {
    kind: Kind,
    /// WebSocket: the message being assembled from its frames (unmasked).
    msg: Vec<u8>,
    next_seq: u32,
    /// Bytes in order, not yet framed (starts at a message boundary).
    buf: Vec<u8>,
    ooo: Vec<(u32, Vec<u8>)>,
    ooo_bytes: usize,
    last_ts: Timestamp,
    /// Lost sync: waiting for a segment that starts a message.
    resync: bool,
    /// Total length of the message at the start of `buf`, once its headers are complete.
    pending: Option<usize>,
    /// Bytes of `buf` already searched for the end of the headers, so that a message arriving
    /// in many small segments is not rescanned from its start each time.
    scanned: usize,
}

impl Stream {
    fn bytes(&self) -> usize {
        self.buf.len() + self.ooo_bytes + self.msg.len()
    }
    fn clear(&mut self) {
        self.msg.clear();
        self.pending = None;
        self.scanned = 0;
        self.buf.clear();
        self.ooo.clear();
        self.ooo_bytes = 0;
    }
    fn lose_sync(&mut self) {
        self.clear();
        self.resync = true;
    }
}

pub(crate) struct TcpTable {
    /// Streams by 4-tuple; the deadline is the last segment's time plus the idle timeout, so the
    /// earliest deadline is also the least recently used stream.
    map: TimedTable<Key, Stream>,
    /// Bytes buffered by streams in `map`.
    total: usize,
    cap: usize,
    stream_cap: usize,
    total_cap: usize,
    timeout_us: i64,
}

/// Emission context for one segment.
struct Emit<'a, 'b> {
    seg: &'a Segment<'a>,
    out: &'a mut dyn FnMut(&Datagram<'_>),
    errors: &'b mut Counters,
}

impl Emit<'_, '_> {
    fn message(&mut self, payload: &[u8], transport: Transport) {
        (self.out)(&Datagram {
            ts: self.seg.ts,
            src: self.seg.src,
            dst: self.seg.dst,
            transport,
            payload,
            ip_len: self.seg.ip_len,
        });
    }
}

impl TcpTable {
    pub fn new(cap: usize, stream_cap: usize, total_cap: usize, timeout_secs: u32) -> Self {
        TcpTable {
            map: TimedTable::new(cap.max(1)),
            total: 0,
            cap: cap.max(1),
            stream_cap: stream_cap.max(1),
            total_cap,
            timeout_us: i64::from(timeout_secs).saturating_mul(1_000_000),
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn bytes(&self) -> usize {
        self.total
    }

    /// Removes a stream and returns its bytes to the budget.
    fn take(&mut self, key: &Key) -> Option<Stream> {
        let st = self.checkout(key)?;
        self.release(st.bytes());
        Some(st)
    }

    /// Removes a stream for processing; its bytes stay counted in `total` while it is out.
    fn checkout(&mut self, key: &Key) -> Option<Stream> {
        self.map.remove(key)
    }

    /// Puts a checked-out stream back as the most recently used.
    fn checkin(&mut self, key: Key, st: Stream, evictions: &mut Counters) {
        let deadline = Timestamp(st.last_ts.micros().saturating_add(self.timeout_us));
        // Room was made before the stream was taken out, so nothing is evicted here; if it
        // were, its bytes go back to the budget and it is counted.
        if let Some((_, old)) = self.map.insert(key, st, deadline) {
            self.release(old.bytes());
            evictions.add(EVICT_TCP_STREAMS, 1);
        }
    }

    fn evict_lru(&mut self, evictions: &mut Counters) -> bool {
        let Some((_, st)) = self.map.pop_first() else {
            return false;
        };
        self.release(st.bytes());
        evictions.add(EVICT_TCP_STREAMS, 1);
        true
    }

    /// Removes streams idle for the timeout at `now`, least recently used first (touch order
    /// follows packet time, so the walk stops at the first stream still active).
    pub fn expire(&mut self, now: Timestamp) {
        while let Some(key) = self.map.first_due(now) {
            self.take(&key);
        }
    }

    /// Takes one segment; emits every SIP message it completes.
    pub fn segment(
        &mut self,
        seg: &Segment<'_>,
        errors: &mut Counters,
        evictions: &mut Counters,
        out: &mut dyn FnMut(&Datagram<'_>),
    ) {
        let key = (seg.src, seg.dst);
        if seg.rst {
            self.take(&key);
            self.take(&(seg.dst, seg.src));
            return;
        }
        let st = match self.checkout(&key) {
            Some(st) if !seg.syn => Some(st),
            // A SYN on a tracked tuple is a new connection: forget the old one.
            Some(old) => {
                self.release(old.bytes());
                None
            }
            None => None,
        };
        let mut st = match st {
            Some(st) => st,
            None => {
                if seg.syn {
                    return;
                }
                let Some(kind) = stream_kind(seg.payload) else {
                    return;
                };
                while self.map.len() >= self.cap {
                    if !self.evict_lru(evictions) {
                        break;
                    }
                }
                Stream {
                    kind,
                    msg: Vec::new(),
                    next_seq: seg.seq,
                    buf: Vec::new(),
                    ooo: Vec::new(),
                    ooo_bytes: 0,
                    last_ts: seg.ts,
                    resync: false,
                    pending: None,
                    scanned: 0,
                }
            }
        };
        st.last_ts = seg.ts;
        let mut em = Emit { seg, out, errors };
        self.process(&mut st, &mut em, evictions);
        if seg.fin {
            self.release(st.bytes());
            return;
        }
        self.checkin(key, st, evictions);
    }

    fn process(&mut self, st: &mut Stream, em: &mut Emit<'_, '_>, evictions: &mut Counters) {
        let seg = em.seg;
        let payload = seg.payload;
        if payload.is_empty() {
            return;
        }
        if st.resync {
            if !starts_message(st.kind, payload) {
                return;
            }
            st.clear();
            st.resync = false;
            st.next_seq = seg.seq;
            if st.kind == Kind::WsHandshake {
                st.kind = Kind::Ws;
            }
        }
        let rel = seg.seq.wrapping_sub(st.next_seq) as i32;
        if rel > 0 {
            // A hole before this segment: hold it if there is room, else lose sync.
            let n = payload.len();
            let fits = st.ooo.len() < MAX_OOO
                && (rel as usize) < self.stream_cap
                && st.bytes() + n <= self.stream_cap
                && self.make_room(n, evictions);
            if fits {
                st.ooo.push((seg.seq, payload.to_vec()));
                st.ooo_bytes += n;
                self.total += n;
                return;
            }
            em.errors.add(ERR_TCP_GAP, 1);
            self.release(st.bytes());
            st.lose_sync();
            if starts_message(st.kind, payload) {
                st.resync = false;
                st.next_seq = seg.seq;
                if st.kind == Kind::WsHandshake {
                    st.kind = Kind::Ws;
                }
                self.feed(st, payload, em, evictions);
            }
            return;
        }
        // Drop bytes already seen (retransmission or overlap).
        let skip = rel.unsigned_abs() as usize;
        let Some(data) = payload.get(skip..).filter(|d| !d.is_empty()) else {
            return;
        };
        self.feed(st, data, em, evictions);
        // Segments held out of order that now follow on.
        while !st.resync {
            let next = st.next_seq;
            let Some(i) = st
                .ooo
                .iter()
                .position(|(s, _)| s.wrapping_sub(next) as i32 <= 0)
            else {
                break;
            };
            let (s, d) = st.ooo.swap_remove(i);
            st.ooo_bytes -= d.len();
            self.release(d.len());
            let skip = next.wrapping_sub(s) as usize;
            if let Some(rest) = d.get(skip..).filter(|r| !r.is_empty()) {
                self.feed(st, rest, em, evictions);
            }
        }
    }

    /// Releases `n` bytes of the budget held by the stream being processed.
    fn release(&mut self, n: usize) {
        self.total = self.total.saturating_sub(n);
    }

    /// Makes room for `n` more buffered bytes in the total budget, evicting other streams.
    fn make_room(&mut self, n: usize, evictions: &mut Counters) -> bool {
        while self.total.saturating_add(n) > self.total_cap {
            if !self.evict_lru(evictions) {
                return false;
            }
        }
        true
    }

    /// Appends in-order bytes and frames what is complete.
    fn feed(
        &mut self,
        st: &mut Stream,
        data: &[u8],
        em: &mut Emit<'_, '_>,
        evictions: &mut Counters,
    ) {
        if st.kind != Kind::Sip {
            return self.feed_ws(st, data, em, evictions);
        }
        st.next_seq = st.next_seq.wrapping_add(data.len() as u32);
        let max = self.stream_cap;
        let stop = if st.buf.is_empty() {
            // Fast path: frame straight from the segment, buffer only the tail.
            let f = frame_all(data, max, &mut |m| em.message(m, Transport::Tcp));
            if f.stop.is_none() {
                let rest = data.get(f.used..).unwrap_or_default();
                if !rest.is_empty() {
                    if !self.make_room(rest.len(), evictions) {
                        em.errors.add(ERR_TCP_TOTAL, 1);
                        self.release(st.bytes());
                        st.lose_sync();
                        return;
                    }
                    st.buf.extend_from_slice(rest);
                    self.total += rest.len();
                    st.pending = f.pending;
                    st.scanned = if f.pending.is_some() { 0 } else { rest.len() };
                }
            }
            f.stop
        } else {
            if !self.make_room(data.len(), evictions) {
                em.errors.add(ERR_TCP_TOTAL, 1);
                self.release(st.bytes());
                st.lose_sync();
                return;
            }
            st.buf.extend_from_slice(data);
            self.total += data.len();
            if !self.worth_framing(st) {
                if st.buf.len() <= max {
                    return;
                }
                em.errors.add(ERR_TCP_OVERSIZE, 1);
                self.release(st.bytes());
                st.lose_sync();
                return;
            }
            let mut buf = std::mem::take(&mut st.buf);
            let f = frame_all(&buf, max, &mut |m| em.message(m, Transport::Tcp));
            buf.drain(..f.used.min(buf.len()));
            self.release(f.used);
            st.buf = buf;
            st.pending = f.pending;
            st.scanned = if f.pending.is_some() { 0 } else { st.buf.len() };
            f.stop
        };
        match stop {
            Some(Stop::Oversize) => em.errors.add(ERR_TCP_OVERSIZE, 1),
            Some(Stop::Invalid) => em.errors.add(ERR_TCP_FRAMING, 1),
            None => return,
        }
        self.release(st.bytes());
        st.lose_sync();
    }

    /// Appends in-order bytes of a WebSocket stream, passes its handshake and emits every
    /// message its complete frames finish.
    fn feed_ws(
        &mut self,
        st: &mut Stream,
        data: &[u8],
        em: &mut Emit<'_, '_>,
        evictions: &mut Counters,
    ) {
        st.next_seq = st.next_seq.wrapping_add(data.len() as u32);
        if !self.make_room(data.len(), evictions) {
            em.errors.add(ERR_TCP_TOTAL, 1);
            self.release(st.bytes());
            st.lose_sync();
            return;
        }
        st.buf.extend_from_slice(data);
        self.total += data.len();
        let max = self.stream_cap;
        let mut used = 0usize;
        // Why the stream stops here: an error key, or "" for an end that is not an error.
        let stop: Option<&'static str> = loop {
            let rest = st.buf.get(used..).unwrap_or_default();
            if st.kind == Kind::WsHandshake {
                match ws::upgrade(rest) {
                    Upgrade::Sip(n) => {
                        used += n;
                        st.kind = Kind::Ws;
                        continue;
                    }
                    Upgrade::Incomplete => break None,
                    // Not a SIP WebSocket after all (or another subprotocol): not followed.
                    Upgrade::No => break Some(""),
                }
            }
            if rest.is_empty() {
                break None;
            }
            let h = match ws::frame(rest, max) {
                ws::Frame::Incomplete => break None,
                ws::Frame::Oversize => break Some(ERR_TCP_OVERSIZE),
                ws::Frame::Invalid => break Some(ERR_WS_FRAMING),
                ws::Frame::Complete(h) => h,
            };
            let payload = rest
                .get(h.header_len..h.header_len + h.payload_len)
                .unwrap_or_default();
            used += h.header_len + h.payload_len;
            match h.opcode {
                ws::OP_TEXT | ws::OP_BINARY | ws::OP_CONTINUATION => {
                    if h.opcode != ws::OP_CONTINUATION && !st.msg.is_empty() {
                        // A new message before the last one ended: that one is lost.
                        em.errors.add(ERR_WS_FRAMING, 1);
                        self.release(st.msg.len());
                        st.msg.clear();
                    }
                    if st.msg.len() + payload.len() > max {
                        break Some(ERR_TCP_OVERSIZE);
                    }
                    if !self.make_room(payload.len(), evictions) {
                        break Some(ERR_TCP_TOTAL);
                    }
                    ws::unmask_into(payload, h.mask, &mut st.msg);
                    self.total += payload.len();
                    if h.fin {
                        em.message(&st.msg, Transport::Ws);
                        self.release(st.msg.len());
                        st.msg.clear();
                    }
                }
                ws::OP_CLOSE => break Some(""),
                // Ping and pong.
                _ => {}
            }
        };
        let used = used.min(st.buf.len());
        st.buf.drain(..used);
        self.release(used);
        if let Some(key) = stop {
            if !key.is_empty() {
                em.errors.add(key, 1);
            }
            self.release(st.bytes());
            st.lose_sync();
        }
    }

    /// Whether the buffered message may now be complete (cheap checks before framing).
    fn worth_framing(&self, st: &mut Stream) -> bool {
        if let Some(total) = st.pending {
            return st.buf.len() >= total;
        }
        // Resume the search for the blank line where the last one stopped (minus the three
        // bytes of a terminator that may straddle the boundary).
        let from = st.scanned.saturating_sub(3);
        let found = st.buf.get(from..).and_then(header_end).is_some();
        if !found {
            st.scanned = st.buf.len();
        }
        found || st.buf.len() < 16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &[u8] = b"INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/TCP h\r\nContent-Length: 4\r\n\r\nv=0\n";
    const OK: &[u8] = b"SIP/2.0 200 OK\r\nl: 0\r\n\r\n";

    struct Rig {
        t: TcpTable,
        errors: Counters,
        evictions: Counters,
        got: Vec<Vec<u8>>,
    }

    impl Rig {
        fn new(stream_cap: usize) -> Rig {
            Rig {
                t: TcpTable::new(4, stream_cap, 1 << 20, 60),
                errors: Counters::default(),
                evictions: Counters::default(),
                got: Vec::new(),
            }
        }
        fn seg_from(&mut self, port: u16, seq: u32, payload: &[u8], flags: (bool, bool, bool)) {
            let seg = Segment {
                ts: Timestamp::from_micros(i64::from(seq)),
                src: SocketAddr::from(([10, 0, 0, 1], port)),
                dst: "10.0.0.2:5060".parse().unwrap(),
                seq,
                syn: flags.0,
                fin: flags.1,
                rst: flags.2,
                payload,
                ip_len: 40 + payload.len() as u32,
            };
            let got = &mut self.got;
            self.t
                .segment(&seg, &mut self.errors, &mut self.evictions, &mut |d| {
                    assert!(matches!(d.transport, Transport::Tcp | Transport::Ws));
                    got.push(d.payload.to_vec())
                });
        }
        fn seg(&mut self, seq: u32, payload: &[u8]) {
            self.seg_from(40000, seq, payload, (false, false, false));
        }
    }

    #[test]
    fn start_detection() {
        assert!(starts_like_sip(b"INVITE sip:x SIP/2.0"));
        assert!(starts_like_sip(b"\r\n\r\nSIP/2.0 180 Ringing"));
        assert!(!starts_like_sip(b"INVITEX sip:x"));
        assert!(!starts_like_sip(b"GET / HTTP/1.1"));
        assert!(!starts_like_sip(b"invite sip:x"));
        assert_eq!(sip_start(b"REG"), Start::Maybe);
        assert_eq!(sip_start(b"SIP/2"), Start::Maybe);
        assert_eq!(sip_start(b""), Start::Maybe);
        assert_eq!(sip_start(b"HTTP"), Start::No);
    }

    #[test]
    fn content_length_forms() {
        assert_eq!(content_length(b"X\r\nContent-Length: 12\r\n\r\n"), Ok(12));
        assert_eq!(content_length(b"X\r\ncontent-length:7\r\n\r\n"), Ok(7));
        assert_eq!(content_length(b"X\r\nl : 3\r\n\r\n"), Ok(3));
        assert_eq!(content_length(b"X\r\nVia: a\r\n\r\n"), Ok(0));
        assert_eq!(content_length(b"X\r\nContent-Length: -1\r\n\r\n"), Err(()));
        assert_eq!(
            content_length(b"X\r\nContent-Length: 99999999999\r\n\r\n"),
            Err(())
        );
        // the start line is not a header even if it looks like one
        assert_eq!(content_length(b"l: 5\r\n\r\n"), Ok(0));
    }

    #[test]
    fn two_messages_in_one_segment() {
        let mut r = Rig::new(4096);
        let both = [INVITE, OK].concat();
        r.seg(1000, &both);
        assert_eq!(r.got, vec![INVITE.to_vec(), OK.to_vec()]);
        assert_eq!(r.t.bytes(), 0);
    }

    #[test]
    fn one_message_over_three_segments_and_body_split() {
        let mut r = Rig::new(4096);
        // header split, then body split across the last two segments
        let cuts = [0, 20, INVITE.len() - 2, INVITE.len()];
        for w in cuts.windows(2) {
            r.seg(500 + w[0] as u32, &INVITE[w[0]..w[1]]);
        }
        assert_eq!(r.got, vec![INVITE.to_vec()]);
        assert_eq!(r.errors, Counters::default());
        assert_eq!(r.t.bytes(), 0);
    }

    #[test]
    fn byte_by_byte_delivery() {
        let mut r = Rig::new(8192);
        let body = "x".repeat(3000);
        let msg = format!("MESSAGE sip:a SIP/2.0\r\nl: 3000\r\n\r\n{body}");
        let stream = [msg.as_bytes(), OK].concat();
        r.seg(1, &stream[..10]);
        for (i, b) in stream.iter().enumerate().skip(10) {
            r.seg(1 + i as u32, &[*b]);
        }
        assert_eq!(r.got, vec![msg.into_bytes(), OK.to_vec()]);
        assert_eq!(r.errors, Counters::default());
        assert_eq!(r.t.bytes(), 0);
    }

    #[test]
    fn keepalive_crlf_between_messages() {
        let mut r = Rig::new(4096);
        let s = [OK, b"\r\n\r\n", OK].concat();
        r.seg(1, &s);
        assert_eq!(r.got.len(), 2);
    }

    #[test]
    fn out_of_order_is_reordered() {
        let mut r = Rig::new(4096);
        let s = [INVITE, OK].concat();
        let a = 30;
        let b = INVITE.len() + 5;
        r.seg(100, &s[..a]);
        r.seg(100 + b as u32, &s[b..]);
        assert!(r.got.is_empty());
        r.seg(100 + a as u32, &s[a..b]);
        assert_eq!(r.got, vec![INVITE.to_vec(), OK.to_vec()]);
        assert_eq!(r.t.bytes(), 0);
    }

    #[test]
    fn retransmission_not_emitted_twice() {
        let mut r = Rig::new(4096);
        r.seg(7, INVITE);
        r.seg(7, INVITE);
        // partial overlap: old bytes plus the next message
        let s = [&INVITE[10..], OK].concat();
        r.seg(17, &s);
        assert_eq!(r.got, vec![INVITE.to_vec(), OK.to_vec()]);
    }

    #[test]
    fn oversize_dropped_then_resync() {
        let mut r = Rig::new(1024);
        let big = format!(
            "MESSAGE sip:a SIP/2.0\r\nContent-Length: 2000\r\n\r\n{}",
            "x".repeat(2000)
        );
        let big = big.as_bytes();
        let mut seq = 1u32;
        for chunk in big.chunks(500) {
            r.seg(seq, chunk);
            seq += chunk.len() as u32;
        }
        assert!(r.got.is_empty());
        assert_eq!(r.errors.get(ERR_TCP_OVERSIZE), 1);
        r.seg(seq, OK);
        assert_eq!(r.got, vec![OK.to_vec()]);
        // headers that never end also count
        let mut r = Rig::new(1024);
        let endless = format!("OPTIONS sip:a SIP/2.0\r\n{}", "X-A: b\r\n".repeat(200));
        r.seg(1, endless.as_bytes());
        assert_eq!(r.errors.get(ERR_TCP_OVERSIZE), 1);
        assert_eq!(r.t.bytes(), 0);
    }

    #[test]
    fn non_sip_is_ignored_and_garbage_resyncs() {
        let mut r = Rig::new(4096);
        r.seg(1, b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(r.t.len(), 0);
        r.seg(100, OK);
        let junk = b"\x00\x01garbage";
        r.seg(100 + OK.len() as u32, junk);
        assert_eq!(r.errors.get(ERR_TCP_FRAMING), 1);
        r.seg(100 + (OK.len() + junk.len()) as u32, INVITE);
        assert_eq!(r.got, vec![OK.to_vec(), INVITE.to_vec()]);
    }

    #[test]
    fn gap_beyond_buffer_resyncs_on_next_message() {
        let mut r = Rig::new(4096);
        r.seg(1, &INVITE[..10]);
        // nine segments after a hole: the ninth overflows the out-of-order buffer
        for i in 0..9u32 {
            r.seg(1000 + i * 10, b"0123456789");
        }
        assert_eq!(r.errors.get(ERR_TCP_GAP), 1);
        r.seg(5000, OK);
        assert_eq!(r.got, vec![OK.to_vec()]);
    }

    #[test]
    fn fin_and_rst_remove_streams_and_table_is_capped() {
        let mut r = Rig::new(4096);
        r.seg_from(1, 1, &OK[..10], (false, false, false));
        r.seg_from(2, 1, &OK[..10], (false, false, false));
        assert_eq!(r.t.len(), 2);
        r.seg_from(1, 11, &OK[10..], (false, true, false));
        assert_eq!(r.got.len(), 1);
        r.seg_from(2, 11, b"", (false, false, true));
        assert_eq!(r.t.len(), 0);
        assert_eq!(r.t.bytes(), 0);
        for p in 10..16 {
            r.seg_from(p, 1, &OK[..10], (false, false, false));
        }
        assert_eq!(r.t.len(), 4);
        assert_eq!(r.evictions.get(EVICT_TCP_STREAMS), 2);
        assert_eq!(r.t.bytes(), 40);
        r.t.expire(Timestamp::from_micros(61_000_001));
        assert_eq!(r.t.len(), 0);
        assert_eq!(r.t.bytes(), 0);
    }

    #[test]
    fn expiry_removes_only_idle_streams() {
        let mut r = Rig::new(4096);
        // Rig packet time is the sequence number in microseconds.
        r.seg_from(1, 1, &OK[..10], (false, false, false));
        r.seg_from(2, 100_000_000, &OK[..10], (false, false, false));
        r.t.expire(Timestamp::from_micros(100_000_000));
        assert_eq!(r.t.len(), 1);
        assert_eq!(r.t.bytes(), 10);
        // the survivor is port 2: its message still completes
        r.seg_from(2, 100_000_010, &OK[10..], (false, false, false));
        assert_eq!(r.got, vec![OK.to_vec()]);
    }

    #[test]
    fn total_budget_evicts_others() {
        let mut r = Rig::new(4096);
        r.t = TcpTable::new(100, 4096, 12, 60);
        r.seg_from(1, 1, &INVITE[..8], (false, false, false));
        r.seg_from(2, 1, &INVITE[..8], (false, false, false));
        assert_eq!(r.evictions.get(EVICT_TCP_STREAMS), 1);
        assert!(r.t.bytes() <= 12);
        // alone too big for the budget
        r.seg_from(3, 1, &INVITE[..20], (false, false, false));
        assert_eq!(r.errors.get(ERR_TCP_TOTAL), 1);
        assert!(r.t.bytes() <= 12);
    }

    const UPGRADE: &[u8] = b"GET / HTTP/1.1\r\nHost: edge.example.net\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: sip\r\nSec-WebSocket-Version: 13\r\n\r\n";
    const SWITCHED: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: sip\r\n\r\n";
    const KEY: Option<[u8; 4]> = Some([0xa1, 0x07, 0x5c, 0x3e]);

    fn frame(fin: bool, op: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
        crate::decode::ws::tests::ws_frame(fin, op, payload, mask)
    }

    impl Rig {
        /// A stream of `bytes` from `port`, cut into segments of `size`.
        fn stream(&mut self, port: u16, bytes: &[u8], size: usize) -> Vec<Transport> {
            let mut transports = Vec::new();
            let mut seq = 1u32;
            // A stream is picked up on a first segment that shows how it starts.
            let first = bytes.len().min(size.max(16));
            let chunks = std::iter::once(&bytes[..first]).chain(bytes[first..].chunks(size));
            for chunk in chunks {
                let seg = Segment {
                    ts: Timestamp::from_micros(i64::from(seq)),
                    src: SocketAddr::from(([10, 0, 0, 1], port)),
                    dst: "192.0.2.10:443".parse().unwrap(),
                    seq,
                    syn: false,
                    fin: false,
                    rst: false,
                    payload: chunk,
                    ip_len: 40 + chunk.len() as u32,
                };
                let got = &mut self.got;
                self.t
                    .segment(&seg, &mut self.errors, &mut self.evictions, &mut |d| {
                        transports.push(d.transport);
                        got.push(d.payload.to_vec())
                    });
                seq += chunk.len() as u32;
            }
            transports
        }
    }

    #[test]
    fn websocket_client_stream_after_handshake() {
        // A browser (WebRTC client): the Upgrade, then masked text frames, a ping, a message in
        // two frames, and a close.
        let mut s = UPGRADE.to_vec();
        s.extend(frame(true, ws::OP_TEXT, INVITE, KEY));
        s.extend(frame(true, 9, b"ping", KEY));
        s.extend(frame(false, ws::OP_TEXT, &OK[..7], KEY));
        s.extend(frame(true, ws::OP_CONTINUATION, &OK[7..], KEY));
        s.extend(frame(true, ws::OP_CLOSE, b"", KEY));
        for size in [1, 7, 60, 1500] {
            let mut r = Rig::new(4096);
            let transports = r.stream(50000, &s, size);
            assert_eq!(
                r.got,
                vec![INVITE.to_vec(), OK.to_vec()],
                "segments of {size}"
            );
            assert!(transports.iter().all(|t| *t == Transport::Ws));
            assert_eq!(r.errors, Counters::default());
            assert_eq!(r.t.bytes(), 0);
        }
    }

    #[test]
    fn websocket_server_answer_with_frame_in_same_segment() {
        let mut s = SWITCHED.to_vec();
        s.extend(frame(true, ws::OP_BINARY, OK, None));
        let mut r = Rig::new(4096);
        r.stream(443, &s, 1500);
        assert_eq!(r.got, vec![OK.to_vec()]);
    }

    #[test]
    fn websocket_picked_up_mid_connection_and_other_subprotocols_ignored() {
        let mut r = Rig::new(4096);
        let s = [
            frame(true, ws::OP_TEXT, INVITE, KEY),
            frame(true, ws::OP_TEXT, OK, KEY),
        ]
        .concat();
        r.stream(50001, &s, 1500);
        assert_eq!(r.got, vec![INVITE.to_vec(), OK.to_vec()]);
        let mut r = Rig::new(4096);
        let chat = b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nSec-WebSocket-Protocol: chat\r\n\r\n";
        let s = [&chat[..], &frame(true, ws::OP_TEXT, b"hello there", KEY)].concat();
        r.stream(50002, &s, 1500);
        assert!(r.got.is_empty());
        assert_eq!(r.t.len(), 0);
        assert_eq!(r.errors, Counters::default());
    }

    #[test]
    fn websocket_oversize_and_bad_frames_resync() {
        let mut r = Rig::new(1024);
        let big = format!(
            "MESSAGE sip:a SIP/2.0\r\nl: 1500\r\n\r\n{}",
            "x".repeat(1500)
        );
        let mut s = UPGRADE.to_vec();
        s.extend(frame(true, ws::OP_TEXT, big.as_bytes(), KEY));
        r.stream(50003, &s, 500);
        assert!(r.got.is_empty());
        assert_eq!(r.errors.get(ERR_TCP_OVERSIZE), 1);
        assert_eq!(r.t.bytes(), 0);
        // Reserved bits set: not a frame we follow.
        let mut r = Rig::new(4096);
        let mut s = UPGRADE.to_vec();
        s.extend([0xf1, 0x00]);
        r.stream(50004, &s, 1500);
        assert_eq!(r.errors.get(ERR_WS_FRAMING), 1);
        assert_eq!(r.t.bytes(), 0);
    }

    proptest::proptest! {
        /// Any cut of a WebSocket stream into segments yields the same messages.
        #[test]
        fn any_segmentation_of_websocket_frames(cuts in proptest::collection::vec(1usize..80, 1..30)) {
            let mut s = UPGRADE.to_vec();
            s.extend(frame(true, ws::OP_TEXT, INVITE, KEY));
            s.extend(frame(false, ws::OP_BINARY, &OK[..5], KEY));
            s.extend(frame(true, ws::OP_CONTINUATION, &OK[5..], KEY));
            let mut r = Rig::new(4096);
            r.seg_from(50010, 1, &s[..16], (false, false, false));
            let mut pos = 16usize;
            let mut seq = 17u32;
            for c in cuts.iter().cycle() {
                if pos >= s.len() {
                    break;
                }
                let end = (pos + c).min(s.len());
                r.seg_from(50010, seq, &s[pos..end], (false, false, false));
                seq += (end - pos) as u32;
                pos = end;
            }
            proptest::prop_assert_eq!(r.got, vec![INVITE.to_vec(), OK.to_vec()]);
            proptest::prop_assert_eq!(r.t.bytes(), 0);
        }
    }

    proptest::proptest! {
        /// Any cut of a message sequence into segments yields the same messages, in order.
        #[test]
        fn any_segmentation_frames_the_same(cuts in proptest::collection::vec(1usize..60, 0..20)) {
            let stream = [INVITE, OK, b"\r\n", INVITE, OK].concat();
            let mut r = Rig::new(4096);
            // The first segment must show a start line for the stream to be picked up.
            r.seg(1, &stream[..10]);
            let mut pos = 10usize;
            for c in cuts {
                let end = (pos + c).min(stream.len());
                if end > pos {
                    r.seg(1 + pos as u32, &stream[pos..end]);
                }
                pos = end;
            }
            if pos < stream.len() {
                r.seg(1 + pos as u32, &stream[pos..]);
            }
            proptest::prop_assert_eq!(r.got, vec![INVITE.to_vec(), OK.to_vec(), INVITE.to_vec(), OK.to_vec()]);
            proptest::prop_assert_eq!(r.t.bytes(), 0);
        }

        #[test]
        fn framing_never_panics(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300), max in 1usize..400) {
            let _ = frame_all(&data, max, &mut |m| assert!(m.len() <= max));
            let _ = content_length(&data);
            let _ = header_end(&data);
        }
    }
}
